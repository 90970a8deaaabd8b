// Runs the real CLI (src-main/cli/main.ts under tsx) in a child process and captures exit code and output.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
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

/** A CLI child that keeps running: wait for a line on stderr, signal it, then await its result. */
export interface RunningCli {
  child: ChildProcess
  stderr(): string
  /** Resolves once stderr matches (rejects when the process ends first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>
  done: Promise<CliResult>
}

export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): RunningCli {
  // tsx would forward SIGTERM/SIGINT from a wrapper process; run node with tsx's loader so the signal reaches the CLI.
  const child = spawn(
    process.execPath,
    [
      '--import',
      pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href,
      path.join(repoRoot, 'src-main/cli/main.ts'),
      ...args,
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, FORCE_COLOR: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let out = ''
  let err = ''
  const waiters: Array<{ re: RegExp; resolve: () => void }> = []
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d
    for (const w of [...waiters])
      if (w.re.test(err)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
  })
  const done = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout: out, stderr: err })),
  )
  return {
    child,
    stderr: () => err,
    waitFor: (re, timeoutMs = 120_000) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(err)) return resolve()
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${err}`)), timeoutMs)
        waiters.push({ re, resolve: () => (clearTimeout(timer), resolve()) })
        void done.then(() => reject(new Error(`the CLI ended before ${re}:\n${err}`)))
      }),
    done,
  }
}
