// The engine: version, backends (GPU name and free memory, or why CPU), and the host process's state.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { EngineInfo, HostStatus } from '@shared/api/contract'
import { errorText, useApi } from '../api/client'
import { bytes } from '../lib/format'
import { useAppStore } from './app'

export const useEngineStore = defineStore('engine', () => {
  const api = useApi()
  const info = ref<EngineInfo | null>(null)
  const error = ref('')
  const loading = ref(false)

  async function refresh(): Promise<void> {
    loading.value = true
    try {
      info.value = await api.engineInfo(undefined)
      error.value = ''
    } catch (e) {
      error.value = errorText(e)
    } finally {
      loading.value = false
    }
  }

  async function restart(): Promise<HostStatus | null> {
    try {
      const s = await api.engineRestart(undefined)
      setTimeout(() => void refresh(), 1500)
      return s
    } catch (e) {
      error.value = errorText(e)
      return null
    }
  }

  /** A GPU answered and passed its self-check (docs/cuda-self-check.md): backend auto computes on it. */
  const usesGpu = computed(() => {
    const b = info.value?.backends
    return b !== undefined && b.cudaAvailable && b.cudaSelfCheck !== 'failed'
  })
  /** "NVIDIA H100 · 71.2 GiB free", "CPU · 16 threads" or "CPU · 16 threads (GPU failed its self-check)". */
  const backendLabel = computed(() => {
    if (!useAppStore().connected) return 'Server disconnected'
    const b = info.value?.backends
    if (!b) return error.value ? 'Engine unavailable' : 'Engine starting…'
    if (usesGpu.value) return `${b.cudaDevice} · ${bytes(b.cudaFreeBytes)} free`
    return `CPU · ${b.cpuThreads} threads${b.cudaAvailable ? ' (GPU failed its self-check)' : ''}`
  })

  api.onEvent((e) => {
    if (e.type === 'host' && e.status.state === 'ready') void refresh()
    if (e.type === 'host' && info.value) info.value = { ...info.value, host: e.status }
  })

  return { info, error, loading, refresh, restart, backendLabel, usesGpu }
})
