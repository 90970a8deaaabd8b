// `dpo-tool ceilings` measures the FMA rate of the kernel set the engine runs: DPO_CPU_KERNELS=avx2 on an AVX-512
// build times 8-lane FMAs (bench:peers --kernels avx2 computes that set's floors from it). Which loop ran is checked,
// never how fast it was (BENCHMARKS.md holds rates).
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { repoRoot } from '../helpers/sharedPath'

const TOOL = path.join(repoRoot, 'build/native/dpo-tool')
// The engine is built for this machine (-march=native), so the build has AVX-512 exactly when the CPU does.
const cpuHasAvx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))

function ceilings(env: Record<string, string>): Record<string, unknown> {
  const json = path.join(tempDir('dpo-ceilings-'), 'ceilings.json')
  execFileSync(TOOL, ['ceilings', '--mib', '8', '--reps', '1', '--json', json], {
    env: { ...process.env, DPO_THREADS: '1', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  return JSON.parse(readFileSync(json, 'utf8'))
}

describe('dpo-tool ceilings', () => {
  it('times the FMAs of the kernel set DPO_CPU_KERNELS asks for', () => {
    expect(existsSync(TOOL), `${TOOL} is missing: run npm run build:native`).toBe(true)
    const widest = ceilings({})
    expect(widest.fma_vectors).toBe("the build's widest vectors")
    expect(Number(widest.fma_GFLOPs_1_thread)).toBeGreaterThan(0)
    const avx2 = ceilings({ DPO_CPU_KERNELS: 'avx2' })
    expect(avx2.fma_vectors).toBe(cpuHasAvx512 ? 'avx2 (8 lanes)' : "the build's widest vectors")
    expect(Number(avx2.fma_GFLOPs_1_thread)).toBeGreaterThan(0)
  })
})
