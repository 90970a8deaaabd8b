// Runs the real CLI (src-main/cli/main.ts under tsx) in a child process and captures exit code and output.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { repoRoot } from './sharedPath'

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export function runCli(args: string[], env: Record<string, string> = {}): CliResult {
  const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx')
  const r = spawnSync(tsx, [path.join(repoRoot, 'src-main/cli/main.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0', ...env },
    timeout: 300_000,
  })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** The last non-empty stderr line: where the CLI puts its one-line error. */
export function lastErrorLine(r: CliResult): string {
  const lines = r.stderr.trim().split('\n')
  return lines[lines.length - 1] ?? ''
}
