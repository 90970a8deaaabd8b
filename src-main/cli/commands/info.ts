// `dpo-studio info`: engine version and the backends this machine offers (CUDA device and free memory, or why not),
// with the GPU self-check's result (docs/cuda-self-check.md).
import { loadNative } from '../../engine/loadNative'

export async function runInfo(opts: { json?: boolean }): Promise<void> {
  const engine = loadNative()
  const b = engine.probe()
  const info = { engine: engine.version(), backends: b }
  if (opts.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n')
    return
  }
  const gib = (n: number) => (n / 2 ** 30).toFixed(1) + ' GiB'
  const lines = [
    `DPO Studio engine ${info.engine}`,
    `cpu:  available, ${b.cpuThreads} threads`,
    b.cudaAvailable
      ? `cuda: ${b.cudaDevice}, ${gib(b.cudaFreeBytes)} free of ${gib(b.cudaTotalBytes)}`
      : `cuda: unavailable (${b.cudaReason})`,
    `cuda self-check: ${b.cudaSelfCheckNote || b.cudaSelfCheck}`,
  ]
  process.stdout.write(lines.join('\n') + '\n')
}
