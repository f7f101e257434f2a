/**
 * `BROKER_TOOLS_PRESET=read-only`: forgejo-mcp's tools that only read, by
 * exact name, from its tool table (codeberg.org/goern/forgejo-mcp README,
 * "Available Tools", v3). forgejo-mcp marks none of its tools read-only or
 * destructive, so the preset names them; a tool added upstream is refused
 * until it is added here. Not every `get_*` reads only in spirit
 * (`get_action_job_logs` may show secrets a workflow printed), but none
 * changes anything. Marking notifications read is a write, so
 * `mark_*` tools are not here.
 */
export const READ_ONLY_TOOLS: ReadonlySet<string> = new Set([
  // User and notifications
  'get_my_user_info',
  'check_notifications',
  'get_notification_thread',
  'list_repo_notifications',
  'search_users',
  // Repositories, topics, branches, branch protection, webhooks
  'list_my_repos',
  'get_repo',
  'search_repos',
  'list_repo_topics',
  'list_branches',
  'list_branch_protections',
  'get_branch_protection',
  'list_repo_hooks',
  'get_repo_hook',
  // Files and commits
  'get_file_content',
  'list_repo_commits',
  // Issues, labels, milestones, comments
  'list_repo_issues',
  'search_issues',
  'get_issue_by_index',
  'list_issue_dependencies',
  'list_issue_dependents',
  'list_repo_milestones',
  'list_repo_labels',
  'list_org_labels',
  'get_repo_label',
  'get_org_label',
  'list_issue_comments',
  'get_issue_comment',
  // Pull requests and reviews
  'list_repo_pull_requests',
  'get_pull_request_by_index',
  'list_pull_reviews',
  'get_pull_review',
  'list_pull_review_comments',
  'list_pull_request_files',
  'get_pull_request_diff',
  // Actions
  'list_workflow_runs',
  'get_workflow_run',
  'list_action_run_jobs',
  'get_action_job_logs',
  'list_action_run_artifacts',
  'get_action_artifact',
  // Organizations
  'search_org_teams',
  // Time tracking
  'list_issue_tracked_times',
  'list_repo_tracked_times',
  'list_my_tracked_times',
  'list_my_stopwatches',
  // Attachments
  'list_issue_attachments',
  'get_issue_attachment',
  'download_issue_attachment',
  'list_comment_attachments',
  'get_comment_attachment',
  'download_comment_attachment',
  // Releases
  'list_releases',
  'get_release_by_id',
  'get_release_by_tag',
  'get_latest_release',
  'list_release_attachments',
  'get_release_attachment',
  'download_release_attachment',
  // Wiki
  'list_wiki_pages',
  'get_wiki_page',
  'get_wiki_revisions',
  // Server
  'get_forgejo_mcp_server_version',
]);
