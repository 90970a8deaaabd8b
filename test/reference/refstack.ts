// Runs the reference-stack scripts (test/reference/py/*.py) in the pinned Python environment that
// scripts/refstack/setup.sh makes: JSON in, JSON out, through files, so large arrays never pass through argv.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { repoRoot } from '../helpers/sharedPath'

/** The environment's python: $DPO_REFSTACK_ENV/bin/python, else <repo>/.refstack/venv/bin/python. */
export function refstackPython(): string {
  const env = process.env.DPO_REFSTACK_ENV || path.join(repoRoot, '.refstack', 'venv')
  const python = path.join(env, 'bin', 'python')
  if (!existsSync(python)) {
    throw new Error(
      `${python} is missing: run \`bash scripts/refstack/setup.sh\` (npm run test:reference does it first)`,
    )
  }
  return python
}

/**
 * Runs test/reference/py/<script> with `input` and returns what it wrote. The script reads argv[1] (JSON) and writes
 * argv[2] (JSON); its stderr is kept for the error message when it fails.
 */
export function runPy<T>(script: string, input: unknown, timeoutMs = 600_000): T {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dpo-refstack-'))
  try {
    const inFile = path.join(dir, 'in.json')
    const outFile = path.join(dir, 'out.json')
    writeFileSync(inFile, JSON.stringify(input))
    const r = spawnSync(refstackPython(), [path.join(repoRoot, 'test/reference/py', script), inFile, outFile], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: timeoutMs,
      // One thread: the suite shares 2 cores, and single-threaded torch sums in a fixed order.
      env: {
        ...process.env,
        OMP_NUM_THREADS: '1',
        TOKENIZERS_PARALLELISM: 'false',
        HF_HUB_OFFLINE: '1',
        TRANSFORMERS_VERBOSITY: 'error',
        PYTHONWARNINGS: 'ignore',
      },
      maxBuffer: 64 * 1024 * 1024,
    })
    if (r.status !== 0) {
      throw new Error(
        `${script} failed (exit ${r.status ?? r.signal}):\n${(r.stderr ?? '').split('\n').slice(-30).join('\n')}`,
      )
    }
    return JSON.parse(readFileSync(outFile, 'utf8')) as T
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
