/** A user of the Forgejo stand-in: who can sign in, and what the API says of them. */
export interface StandinUser {
  readonly id: number;
  readonly login: string;
  readonly password: string;
  readonly fullName: string;
  readonly email: string;
}
