// `npm run bench:peers --quick` end to end on a tiny random Llama: our GGUF writer's F32 and Q4_0 files load in
// llama.cpp (node-llama-cpp), its greedy tokens on the F32 file equal ours, and both engines are timed and tabled.
// Only that it ran and what it checked are asserted; timings belong in BENCHMARKS.md, never in tests.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { repoRoot } from '../helpers/sharedPath'

describe('bench:peers --quick', () => {
  it('checks llama.cpp decodes the tiny checkpoint as we do, then times both', () => {
    const out = tempDir('dpo-peers-')
    execFileSync(
      path.join(repoRoot, 'node_modules/.bin/tsx'),
      [path.join(repoRoot, 'scripts/bench/peersBench.ts'), '--quick', '--threads', '1', '--out', out],
      { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'], timeout: 240_000 },
    )
    const r = JSON.parse(readFileSync(path.join(out, 'peers-bench.json'), 'utf8'))
    expect(r.checks).toHaveLength(1)
    expect(r.checks[0].parts_at).toBe(-1)
    expect(r.checks[0].ours.length).toBeGreaterThan(0)
    const works = r.rows.map((row: { work: string }) => row.work)
    expect(works).toEqual([
      'greedy decode, batch 1, 1 thread (ours NF4, peer Q4_0)',
      'prefill, 64 tokens, 1 thread (ours NF4, peer Q4_0)',
    ])
    for (const row of r.rows) {
      expect(row.ours.median).toBeGreaterThan(0)
      expect(row.peer.median).toBeGreaterThan(0)
    }
  }, 300_000)
})
