// `dpo-studio info`: engine version and the backends this machine offers (CUDA device and free memory, or why not),
// with the GPU self-check's result (docs/cuda-self-check.md); with --model, what the model panel shows about a
// folder, including the engine loader's verdict on it.
import { loadAddon } from '../../addon/loadAddon'
import { inspectModel } from '../../services/models/inspectModel'

export async function runInfo(opts: { json?: boolean; model?: string }): Promise<void> {
  const engine = loadAddon()
  const b = engine.probe()
  const model = opts.model ? await inspectModel(opts.model) : undefined
  const info = { engine: engine.version(), backends: b, ...(model ? { model } : {}) }
  if (opts.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n')
    return
  }
  const gib = (n: number) => (n / 2 ** 30).toFixed(1) + ' GiB'
  const lines = [
    `DPO Studio engine ${info.engine}`,
    `cpu:  available, ${b.cpuThreads} threads, kernels ${b.cpuKernels}`,
    b.cudaAvailable
      ? `cuda: ${b.cudaDevice}, ${gib(b.cudaFreeBytes)} free of ${gib(b.cudaTotalBytes)}`
      : `cuda: unavailable (${b.cudaReason})`,
    `cuda self-check: ${b.cudaSelfCheckNote || b.cudaSelfCheck}`,
  ]
  if (model) {
    lines.push(
      `model: ${model.dir}`,
      `  ${model.architecture}, ${(model.params / 1e6).toFixed(1)}M parameters, ${model.layers} layers`,
    )
    lines.push(model.supported ? '  supported: loads with this engine' : `  not supported: ${model.note}`)
  }
  process.stdout.write(lines.join('\n') + '\n')
}
