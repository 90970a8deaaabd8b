// A full disk (a real tmpfs, filled): appends never leave a torn line, the error names the file, and a training run
// stopped by it is marked failed with the reason in run_status.json (issue 10 item 4; docs/run-directory.md); an
// export that no longer fits leaves the earlier one as it was (docs/exports.md).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { repoRoot } from '../helpers/sharedPath'

/** Runs the scenario as root (mount works) or, failing that, as root of a user + mount namespace. */
function runScenario(): { append: any; run: any; export: any } {
  const base = tempDir('dpo-fulldisk-')
  const args = [
    '--import',
    'tsx/esm',
    path.join(repoRoot, 'test/helpers/fullDiskScenario.ts'),
    path.join(base, 'mnt'),
    path.join(base, 'cache'),
  ]
  const tries: Array<[string, string[]]> = [
    [process.execPath, args],
    ['unshare', ['--user', '--map-root-user', '--mount', process.execPath, ...args]],
  ]
  const errors: string[] = []
  for (const [cmd, argv] of tries) {
    const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: 'utf8', timeout: 300_000 })
    if (r.status === 0) return JSON.parse(r.stdout.trim().split('\n').at(-1)!)
    errors.push(`${cmd}: ${(r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`)
  }
  throw new Error(
    `could not mount a small tmpfs for the full-disk test (needs root or user namespaces):\n${errors.join('\n')}`,
  )
}

describe('a full disk', () => {
  const result = runScenario()

  it('an append that no longer fits is cut back: whole lines only, and the error names the file', () => {
    expect(result.append.appended).toBeGreaterThan(0)
    expect(result.append.error.code).toBe('E_DISK_FULL')
    expect(result.append.error.message).toMatch(
      /^cannot append to .*probe\.jsonl: no space left on the device \(ENOSPC\)/,
    )
    expect(result.append.badLines).toEqual([])
  })

  it('a training run stopped by it fails with the file named, keeps whole lines, and is marked failed with the reason', () => {
    const run = result.run
    expect(run.filled).toBe(true)
    expect(run.code, run.stderr.join('\n')).toBe(1)
    expect(run.stderr.at(-1)).toMatch(
      /error \[E_DISK_FULL\]: cannot (append to|write) .*(metrics|steps)\.jsonl.*no space left/,
    )
    expect(run.metricsLines).toBeGreaterThan(0)
    expect(run.badLines).toEqual([])
    expect(run.status).toMatchObject({ status: 'failed', phase: 'train' })
    expect(run.status.error).toMatch(/no space left on the device/)
    expect(run.lockLeft).toBe(false)
  })

  it('an export that no longer fits fails naming the export, and the earlier export stays as it was with no temp folder', () => {
    expect(result.export.error.code).toBe('E_DISK_FULL')
    expect(result.export.error.message).toMatch(
      /^cannot write the export to .*merged: no space left on the device \(ENOSPC\)/,
    )
    expect(result.export.kept).toBe(true)
    expect(result.export.entries).toEqual(['filler.bin', 'merged'])
  })
})
