/** What `osmoda-mesh agent` accepts on its command line; each flag overrides the config file. */
export interface AgentCliOptions {
  config?: string;
  stateDir?: string;
  listen?: string;
  publicEndpoint?: string[];
  control?: string;
  dns?: string;
  vipRange?: string;
}

/** Starts the daemon in the foreground; resolves with the process exit code once it has stopped. */
export type RunAgent = (options: AgentCliOptions) => Promise<number>;
