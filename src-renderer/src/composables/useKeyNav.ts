// Left/right arrow keys (and j/k) call back while the component is mounted, except while typing in a field.
import { onBeforeUnmount, onMounted } from 'vue'

export function useKeyNav(step: (delta: number) => void): void {
  const onKey = (e: KeyboardEvent) => {
    const t = e.target as HTMLElement | null
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable))
      return
    if (e.key === 'ArrowRight' || e.key === 'j') step(1)
    else if (e.key === 'ArrowLeft' || e.key === 'k') step(-1)
  }
  onMounted(() => window.addEventListener('keydown', onKey))
  onBeforeUnmount(() => window.removeEventListener('keydown', onKey))
}
