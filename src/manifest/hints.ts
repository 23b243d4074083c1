/**
 * The words of the tools people come from (docker compose, PM2, systemd units) mapped to
 * captree's, so `environment:` gets "captree calls it env" instead of a bare "unknown field".
 */

const fields: Record<string, string> = {
  // docker compose
  environment: "captree calls it 'env' (a mapping NAME: value)",
  env_file: "captree calls it 'envFile' (a file or a list of files of NAME=value lines)",
  depends_on:
    "captree orders by contracts: the provider declares 'provides: { NAME: ... }', this child 'requires: { services: [NAME] }'",
  ports: "captree hands listening sockets: 'requires: { listen: { http: 127.0.0.1:8080 } }'",
  volumes: "captree narrows the filesystem with 'requires: { paths: { ./data: rw } }'",
  working_dir: "captree calls it 'cwd'",
  entrypoint: "captree runs one argv: 'command: [program, arg, ...]'",
  image: "captree runs programs, not images: 'command: [program, arg, ...]'",
  healthcheck: "captree has 'ready:' (when it is up) and 'liveness:' (while it runs)",
  container_name: "captree calls it 'name'",
  mem_limit: "captree budgets memory with 'requires: { memory: 256Mi }'",
  cpus: "captree budgets CPU with 'requires: { cpu: 0.5 }'",
  stop_signal: "captree calls it 'stopSignal'",
  stop_grace_period: "captree calls it 'shutdown' (e.g. 10s)",
  // PM2
  script: "captree calls it 'command' (command: [node, app.js])",
  args: "captree takes one argv: 'command: [program, arg, ...]'",
  autorestart:
    "captree says 'restart: permanent' (always), 'transient' (after a crash) or 'temporary' (never)",
  max_memory_restart: "captree caps memory with 'requires: { memory: 256Mi }' (the kernel enforces it)",
  instances: "captree runs each instance as its own child (or a node with 'strategy: dynamic')",
  // systemd
  ExecStart: "captree calls it 'command'",
  Environment: "captree calls it 'env'",
  EnvironmentFile: "captree calls it 'envFile'",
  WorkingDirectory: "captree calls it 'cwd'",
  User: "captree calls it 'user'",
  Restart: "captree calls it 'restart' (permanent | transient | temporary)",
  After: "captree orders by contracts: 'requires: { services: [NAME] }'",
  Requires: "captree orders by contracts: 'requires: { services: [NAME] }'",
  ExecReload: "captree calls it 'reload' (a signal such as SIGHUP, or a command)",
};

/** A hint for a field captree does not know but another tool does. */
export function fieldHint(key: string): string | undefined {
  return Object.hasOwn(fields, key) ? fields[key] : undefined;
}

const restartValues: Record<string, string> = {
  always: 'permanent',
  'unless-stopped': 'permanent',
  'on-failure': 'transient',
  'on-abnormal': 'transient',
  no: 'temporary',
  never: 'temporary',
};

/** `restart: always` (compose, systemd) → `permanent`. */
export function restartHint(value: string): string | undefined {
  const v = restartValues[value];
  return v === undefined ? undefined : `captree's word for '${value}' is '${v}'`;
}
