// Why the engine computes on the CPU, in words for someone without a GPU (issue 12 item 14): a plain headline, with
// the engine's own reason ("cudaGetDeviceCount failed: error 35") kept as details on demand.
import type { BackendInfo } from '@shared/engine/engineTypes'

/** CUDA runtime errors seen when asking for devices, in words (cudaError_t values, CUDA runtime API docs). */
const CUDA_ERRORS: Record<number, string> = {
  35: 'no NVIDIA driver is installed, or it is older than this build needs',
  100: 'the driver reports no CUDA-capable device',
  999: 'the driver failed in an unknown way',
}

export function cpuReason(b: Pick<BackendInfo, 'cudaCompiled' | 'cudaAvailable' | 'cudaReason'>): {
  headline: string
  details: string | null
} {
  const raw = b.cudaReason.trim()
  if (!b.cudaCompiled)
    return { headline: 'This engine build has no CUDA backend, so it computes on the CPU.', details: raw || null }
  const code = Number(raw.match(/error (\d+)/)?.[1])
  const meaning = CUDA_ERRORS[code]
  return {
    headline: 'No NVIDIA GPU found, computing on the CPU.',
    details: raw ? (meaning ? `${raw} (${meaning})` : raw) : null,
  }
}
