/** One replica of the fleet as the others see it. */
export interface ReplicaInfo {
  readonly id: string;
  /** Where the other replicas reach it (BROKER_REPLICA_URL); undefined: nobody can forward to it. */
  readonly url: URL | undefined;
}

/** The live replicas, as the HTTP edge routes by them (the registry keeps it from the store's heartbeats). */
export interface FleetView {
  /** Every live replica, this one included. */
  live(): readonly ReplicaInfo[];
  /** The live replica with this id; undefined when it is gone (or never was). */
  find(id: string): ReplicaInfo | undefined;
}
