// bench:peers --kernels: the environment that holds each engine to one instruction set, and the reading of which CPU
// variant llama.cpp loaded (scripts/bench/peerIsa.ts).
import { describe, expect, it } from 'vitest'
import {
  llamaCpuBackendFromMaps,
  llamaCpuBackendPath,
  llamaCpuVariant,
  llamaVariantIsa,
  llamaVariantMismatch,
  oursCpuKernels,
  oursIsaEnv,
  parseKernelSet,
  torchIsaEnv,
} from '../../scripts/bench/peerIsa'

describe('bench:peers instruction sets', () => {
  it("finds ggml's CPU library in /proc/self/maps when its load message went missing", () => {
    const maps = [
      '7f00-7f01 r-xp 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6',
      '7f02-7f03 r-xp 00000000 fd:01 456 /x/bins/linux-x64/libggml-cpu-haswell.so',
      '7f04-7f05 r--p 00000000 fd:01 789 /x/bins/linux-x64/libggml-base.so',
    ].join('\n')
    const file = llamaCpuBackendFromMaps(maps)
    expect(file).toBe('/x/bins/linux-x64/libggml-cpu-haswell.so')
    expect(llamaCpuVariant([], file)).toBe('haswell')
    expect(llamaCpuBackendFromMaps('7f04-7f05 r--p 00000000 fd:01 789 /x/libggml-base.so')).toBeNull()
  })

  it("reads our kernel set and its 4-bit products from dpo-tool info's cpu line", () => {
    const info =
      "engine 0.1.0\ncpu: 2 threads, kernels avx512, 4-bit products by bf16 dot products (vdpbf16ps at 1.0x an FMA's time)\ncuda: unavailable (x)\n"
    expect(oursCpuKernels(info)).toBe("avx512, 4-bit products by bf16 dot products (vdpbf16ps at 1.0x an FMA's time)")
    expect(oursCpuKernels('engine 0.1.0\ncpu: 2 threads\n')).toBeNull()
  })

  it('parses --kernels and refuses other names', () => {
    expect(parseKernelSet(undefined)).toBeNull()
    expect(parseKernelSet('')).toBeNull()
    expect(parseKernelSet('avx2')).toBe('avx2')
    expect(parseKernelSet('avx512')).toBe('avx512')
    expect(() => parseKernelSet('sse')).toThrow(/--kernels: unknown sse/)
  })

  it('sets each engine switch, and none without --kernels', () => {
    expect(oursIsaEnv(null)).toEqual({})
    expect(torchIsaEnv(null)).toEqual({})
    expect(oursIsaEnv('avx2')).toEqual({ DPO_CPU_KERNELS: 'avx2' })
    expect(torchIsaEnv('avx2')).toEqual({
      ATEN_CPU_CAPABILITY: 'avx2',
      MKL_ENABLE_INSTRUCTIONS: 'AVX2',
      ONEDNN_MAX_CPU_ISA: 'AVX2',
    })
    expect(torchIsaEnv('avx512').ONEDNN_MAX_CPU_ISA).toBe('AVX512_CORE')
  })

  it("reads ggml's load message", () => {
    const lines = [
      'llama_model_loader: something else',
      'load_backend: loaded CPU backend from /x/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-cpu-zen4.so\n',
    ]
    expect(llamaCpuBackendPath(lines)).toBe(
      '/x/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-cpu-zen4.so',
    )
    expect(llamaCpuVariant(lines)).toBe('zen4')
    expect(llamaCpuVariant(['load_backend: loaded CPU backend from C:\\b\\libggml-cpu-haswell.dll'])).toBe('haswell')
    expect(llamaCpuVariant(['nothing here'])).toBeNull()
    expect(llamaCpuBackendPath(['nothing here'])).toBeNull()
    expect(llamaCpuVariant(['load_backend: loaded CPU backend from /b/libggml-base.so'])).toBeNull()
  })

  it("knows the widest vectors of ggml's x86 variants", () => {
    expect(llamaVariantIsa('sapphirerapids')).toBe('avx512')
    expect(llamaVariantIsa('zen4')).toBe('avx512')
    expect(llamaVariantIsa('haswell')).toBe('avx2')
    expect(llamaVariantIsa('alderlake')).toBe('avx2')
    expect(llamaVariantIsa('sse42')).toBe('older')
    expect(llamaVariantIsa('armv9')).toBeNull()
  })

  it('names a variant wider than --kernels asks, and nothing when it matches', () => {
    expect(llamaVariantMismatch('zen4', null, '/bins')).toBeNull()
    expect(llamaVariantMismatch('haswell', 'avx2', '/bins')).toBeNull()
    expect(llamaVariantMismatch('zen4', 'avx2', '/bins')).toMatch(/zen4 variant \(AVX-512\).*\/bins.*haswell/)
    expect(llamaVariantMismatch('haswell', 'avx512', '/bins')).toMatch(/haswell variant \(avx2\).*avx512/)
    expect(llamaVariantMismatch(null, 'avx2', '/bins')).toMatch(/unknown/)
  })
})
