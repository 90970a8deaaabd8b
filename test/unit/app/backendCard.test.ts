// @vitest-environment happy-dom
// The compute-backend panel and the engine store with the GPU self-check (docs/cuda-self-check.md): a GPU that passed
// shows as the GPU with its self-check line; one that failed shows the CPU with the failing kernel and GPU named, and
// the sidebar label says so.
import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { BackendInfo } from '../../../src-main/addon/addonTypes'
import { setApi } from '../../../src-renderer/src/api/client'
import ModelsBackendCard from '../../../src-renderer/src/components/models/ModelsBackendCard.vue'
import { useEngineStore } from '../../../src-renderer/src/stores/engine'
import { fakeApi } from './fakeApi'

const GPU: BackendInfo = {
  cudaCompiled: true,
  cudaAvailable: true,
  cudaReason: '',
  cudaDevice: 'NVIDIA H200',
  cudaFreeBytes: 140 * 2 ** 30,
  cudaTotalBytes: 141 * 2 ** 30,
  cudaSelfCheck: 'passed',
  cudaSelfCheckNote: 'passed (31 kernels compared with the CPU backend, 14.2 ms)',
  cudaSelfCheckMs: 14.2,
  cpuThreads: 16,
  cpuKernels: "avx512, 4-bit products by bf16 dot products (vdpbf16ps at 1.0x an FMA's time)",
}
const FAILED: BackendInfo = {
  ...GPU,
  cudaSelfCheck: 'failed',
  cudaSelfCheckNote:
    'failed: the CUDA self-check failed on NVIDIA H200: kernel attention_backward differs from the CPU backend (dq: 3 of 2048 values not within tolerance; e.g. [17] = 0.31, the CPU gives 0.12)',
}

async function mountWith(backends: BackendInfo) {
  setApi(
    fakeApi({
      engineInfo: () => ({ version: '0.1.0+cuda', backends, training: true, host: { state: 'ready', pid: 7 } }),
    }).api,
  )
  const engine = useEngineStore()
  await engine.refresh()
  return { engine, w: mount(ModelsBackendCard, { props: { engine } }) }
}

beforeEach(() => setActivePinia(createPinia()))

describe('compute backend panel', () => {
  it('a GPU that passed its self-check: the GPU, with the self-check line', async () => {
    const { engine, w } = await mountWith(GPU)
    expect(w.text()).toContain('NVIDIA H200')
    expect(w.get('[data-testid="self-check"]').text()).toBe(
      'Self-check passed (31 kernels compared with the CPU backend, 14.2 ms)',
    )
    expect(w.find('[data-testid="cpu-reason"]').exists()).toBe(false)
    expect(engine.usesGpu).toBe(true)
    expect(engine.backendLabel).toMatch(/^NVIDIA H200 · /)
  })

  it('a GPU that failed: the CPU, naming the GPU and the failing kernel', async () => {
    const { engine, w } = await mountWith(FAILED)
    const line = w.get('[data-testid="self-check"]').text()
    expect(line).toContain("NVIDIA H200 failed the engine's GPU self-check, so models load on the CPU")
    expect(line).toContain('kernel attention_backward differs from the CPU backend')
    expect(w.text()).toContain('16 threads')
    expect(w.get('[data-testid="cpu-kernels"]').text()).toBe(
      "Kernels avx512, 4-bit products by bf16 dot products (vdpbf16ps at 1.0x an FMA's time)",
    )
    expect(engine.usesGpu).toBe(false)
    expect(engine.backendLabel).toBe('CPU · 16 threads (GPU failed its self-check)')
  })

  it('no GPU: the CPU with the reason, no self-check line', async () => {
    const { engine, w } = await mountWith({
      ...GPU,
      cudaAvailable: false,
      cudaReason: 'cudaGetDeviceCount failed: error 35 (CUDA driver version is insufficient for CUDA runtime version)',
      cudaDevice: '',
      cudaSelfCheck: 'not run',
      cudaSelfCheckNote: '',
    })
    // In words first; the engine's reason on demand.
    expect(w.get('[data-testid="cpu-reason"]').text()).toBe('No NVIDIA GPU found, computing on the CPU.')
    expect(w.get('[data-testid="cpu-details"]').text()).toContain(
      'error 35 (CUDA driver version is insufficient for CUDA runtime version) (no NVIDIA driver is installed',
    )
    expect(w.find('[data-testid="self-check"]').exists()).toBe(false)
    expect(engine.backendLabel).toBe('CPU · 16 threads')
  })
})
