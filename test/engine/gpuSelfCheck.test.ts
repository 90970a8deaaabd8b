// The GPU self-check through the real CLI and addon (docs/cuda-self-check.md), on the CPU: DPO_TEST_GPU stands a
// guarded CPU backend in for the GPU, optionally with one kernel spoiled (native/src/cpu/fault_injecting_backend.h).
// `info` shows the result; --backend auto computes on the CPU after a failed check, naming the kernel and the GPU;
// --backend cuda fails with that message. Also: when CI asks for it (.ci/run sets DPO_EXPECT_CUDA_BUILD=1), the
// engine must be a CUDA-enabled build, so CI notices a lost nvcc.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { lastErrorLine, runCli } from '../helpers/runCli'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const PROMPTS = path.join(sharedPath('datasets/genai-hw6'), 'test_prompt.json')

function info(env: Record<string, string> = {}) {
  const r = runCli(['info', '--json'], env)
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as { engine: string; backends: Record<string, unknown> }
}

function generate(backend: string, env: Record<string, string>) {
  const out = path.join(tempDir(), 'out.json')
  const r = runCli(
    ['generate', '--model', STORIES, '--prompts', PROMPTS, '--max-new-tokens', '8', '--backend', backend, '--out', out],
    env,
  )
  return { r, out }
}

describe('the engine build', () => {
  it('is CUDA-enabled exactly when it says so, and when CI expects it', () => {
    const i = info({ DPO_TEST_GPU: '' })
    expect(i.engine.endsWith('+cuda')).toBe(i.backends.cudaCompiled)
    if (process.env.DPO_EXPECT_CUDA_BUILD === '1') {
      expect(i.engine).toMatch(/^\d+\.\d+\.\d+\+cuda$/)
      expect(i.backends.cudaCompiled).toBe(true)
    }
    // Without a GPU the reason is the runtime's (error 35 without a driver), and no self-check ran.
    if (!i.backends.cudaAvailable) {
      expect(i.backends.cudaSelfCheck).toBe('not run')
      if (i.backends.cudaCompiled) expect(i.backends.cudaReason).toMatch(/cudaGetDeviceCount failed: error \d+/)
    }
  })
})

describe('the GPU self-check (stand-in GPU)', () => {
  it('passes on a correct backend: info shows it, and auto computes on the GPU', () => {
    const env = { DPO_TEST_GPU: 'cpu' }
    const i = info(env)
    expect(i.backends).toMatchObject({
      cudaAvailable: true,
      cudaDevice: 'test GPU (DPO_TEST_GPU=cpu)',
      cudaSelfCheck: 'passed',
    })
    expect(i.backends.cudaSelfCheckNote).toMatch(/^passed \(31 kernels compared with the CPU backend, [\d.]+ ms\)$/)
    const text = runCli(['info'], env)
    expect(text.stdout).toContain('cuda self-check: passed (31 kernels')
    const { r } = generate('auto', env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('cpu-guarded')
    expect(r.stderr).toContain('auto: CUDA device test GPU (DPO_TEST_GPU=cpu), self-check passed')
  })

  it('fails on a wrong kernel: info names it, auto falls back to the CPU with the same answers, cuda refuses', () => {
    const env = { DPO_TEST_GPU: 'cpu:corrupt=attention_backward' }
    const i = info(env)
    expect(i.backends.cudaSelfCheck).toBe('failed')
    expect(i.backends.cudaSelfCheckNote).toContain(
      'the CUDA self-check failed on test GPU (DPO_TEST_GPU=cpu:corrupt=attention_backward): kernel attention_backward differs from the CPU backend (dq:',
    )
    const auto = generate('auto', env)
    expect(auto.r.code, auto.r.stderr).toBe(0)
    expect(auto.r.stderr).toMatch(
      /model: .*\(auto: the CUDA self-check failed on test GPU .*kernel attention_backward.*; computing on the CPU/,
    )
    expect(auto.r.stderr).not.toContain('injected fault')
    const cpu = generate('cpu', {})
    expect(cpu.r.code, cpu.r.stderr).toBe(0)
    expect(JSON.parse(readFileSync(auto.out, 'utf8'))).toEqual(JSON.parse(readFileSync(cpu.out, 'utf8')))

    const cuda = generate('cuda', env)
    expect(cuda.r.code).not.toBe(0)
    expect(lastErrorLine(cuda.r)).toMatch(/^dpo-studio: error.*E_NO_CUDA/)
    expect(lastErrorLine(cuda.r)).toContain('--backend cuda was requested but the CUDA self-check failed on test GPU')
    expect(lastErrorLine(cuda.r)).toContain('kernel attention_backward')
  })

  it('a kernel that faults the GPU fails --backend cuda with E_DEVICE_FAULT', () => {
    const cuda = generate('cuda', { DPO_TEST_GPU: 'cpu:raise=matmul_nf4' })
    expect(cuda.r.code).not.toBe(0)
    expect(lastErrorLine(cuda.r)).toContain('E_DEVICE_FAULT')
    expect(lastErrorLine(cuda.r)).toContain('kernel matmul_nf4 raised an error')
  })
})
