// `dpo-studio info`: engine version and the backends this machine offers (CUDA device and free memory, or why not).
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
  ]
  process.stdout.write(lines.join('\n') + '\n')
}
