// `bench:peers --kernels avx2`: both sides held to one x86 instruction set, so that an AVX-512 machine also measures
// what an AVX2-only machine (Intel client cores, AMD Zen 3 and older) gets. Ours: DPO_CPU_KERNELS picks the kernel set
// (docs/cpu-kernels.md) and `dpo-tool ceilings` measures that set's FMA rate. PyTorch: ATen's dispatch, MKL and oneDNN
// each have a switch (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA). llama.cpp: ggml loads the
// best `libggml-cpu-<variant>.so` it finds beside the binary and has no switch, so the bench reports which variant ran
// (from ggml's own load message) and says when it is wider than asked. The ops outside our kernel sets keep the tool's
// build flags: docs/cpu-kernels.md#measuring-the-avx2-set-on-an-avx-512-machine has the build that is AVX2 throughout.

/** The instruction sets `--kernels` can hold both sides to. */
export type KernelSet = 'avx512' | 'avx2'

export function parseKernelSet(value: string | undefined): KernelSet | null {
  if (value === undefined || value === '') return null
  if (value === 'avx512' || value === 'avx2') return value
  throw new Error(`--kernels: unknown ${value} (avx512 or avx2)`)
}

/** Environment for our engine (dpo-tool) under `--kernels`. */
export function oursIsaEnv(set: KernelSet | null): Record<string, string> {
  return set ? { DPO_CPU_KERNELS: set } : {}
}

/** Environment that caps PyTorch's CPU code at `set`: ATen's kernels, MKL's GEMM and oneDNN's primitives. */
export function torchIsaEnv(set: KernelSet | null): Record<string, string> {
  if (set === 'avx2')
    return { ATEN_CPU_CAPABILITY: 'avx2', MKL_ENABLE_INSTRUCTIONS: 'AVX2', ONEDNN_MAX_CPU_ISA: 'AVX2' }
  if (set === 'avx512')
    return { ATEN_CPU_CAPABILITY: 'avx512', MKL_ENABLE_INSTRUCTIONS: 'AVX512', ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' }
  return {}
}

/** The CPU backend library ggml loaded, from its log line "load_backend: loaded CPU backend from PATH". */
export function llamaCpuBackendPath(logLines: readonly string[]): string | null {
  for (const line of logLines) {
    const m = /loaded CPU backend from (\S+)/.exec(line)
    if (m) return m[1]!
  }
  return null
}

/**
 * The CPU backend library mapped into this process, from Linux's /proc/self/maps text: where ggml's load message did
 * not reach the logger (it was seen to go missing in a run that loaded haswell), the library the process maps says
 * the same.
 */
export function llamaCpuBackendFromMaps(mapsText: string): string | null {
  for (const line of mapsText.split('\n')) {
    const file = line.trim().split(/\s+/).pop() ?? ''
    if (/\/libggml-cpu-[A-Za-z0-9_]+\.so$/.test(file)) return file
  }
  return null
}

/** The CPU variant ggml loaded: "haswell" of ".../libggml-cpu-haswell.so", from the same log line (or the file). */
export function llamaCpuVariant(logLines: readonly string[], file = llamaCpuBackendPath(logLines)): string | null {
  const m = file ? /libggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)$/.exec(file) : null
  return m ? m[1]! : null
}

// ggml's x86 variants (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS) by the widest vectors they use.
const avx512Variants = new Set([
  'skylakex',
  'cannonlake',
  'cascadelake',
  'cooperlake',
  'icelake',
  'sapphirerapids',
  'zen4',
])
const avx2Variants = new Set(['haswell', 'alderlake'])
const olderVariants = new Set(['x64', 'sse42', 'sandybridge', 'ivybridge', 'piledriver'])

/** The widest instruction set a ggml CPU variant uses: 'avx512', 'avx2', 'older', or null for a name not known here. */
export function llamaVariantIsa(variant: string): KernelSet | 'older' | null {
  if (avx512Variants.has(variant)) return 'avx512'
  if (avx2Variants.has(variant)) return 'avx2'
  if (olderVariants.has(variant)) return 'older'
  return null
}

/**
 * What to tell the user when llama.cpp's variant does not match `--kernels` (null when it does, or nothing was asked):
 * the comparison then holds our side and PyTorch to the set while llama.cpp uses wider vectors, or the reverse.
 */
export function llamaVariantMismatch(variant: string | null, set: KernelSet | null, binDir: string): string | null {
  if (!set) return null
  if (variant === null)
    return `llama.cpp's CPU variant is unknown (no load message): its instruction set is not held to ${set}`
  const isa = llamaVariantIsa(variant)
  if (isa === set) return null
  if (isa === 'avx512' && set === 'avx2')
    return (
      `llama.cpp loaded its ${variant} variant (AVX-512) where --kernels asks for avx2: ggml picks the widest ` +
      `libggml-cpu-*.so in ${binDir}; move the AVX-512 ones (${[...avx512Variants].join(', ')}) aside for the run, ` +
      `and alderlake too to get haswell, what an AVX2 core without AVX-VNNI (AMD Zen 3) loads`
    )
  return `llama.cpp loaded its ${variant} variant (${isa ?? 'unknown instruction set'}) where --kernels asks for ${set}`
}

/**
 * Our engine's kernel set and how it multiplies 4-bit weights on this core, from `dpo-tool info`'s line
 * "cpu: 2 threads, kernels avx512, 4-bit products by bf16 dot products (...)": the bf16-dot choice is measured at
 * start-up, so the record says which kernels the numbers are of. Null when the line is missing.
 */
export function oursCpuKernels(infoText: string): string | null {
  const m = /^cpu: \d+ threads, kernels (.+)$/m.exec(infoText)
  return m ? m[1]!.trim() : null
}
