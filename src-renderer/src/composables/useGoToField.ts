// "Fix the parameter errors" links: open the Parameters view and put the keyboard focus on the field in error.
import { nextTick } from 'vue'
import type { ParamKey } from '../lib/paramFields'
import { useAppStore } from '../stores/app'

export function useGoToField() {
  const app = useAppStore()
  return async function goToField(key: ParamKey): Promise<void> {
    app.go('params')
    await nextTick()
    const box = document.querySelector<HTMLElement>(`[data-testid="param-${key}"]`)
    const target =
      document.getElementById(`p-${key}`) ?? box?.querySelector<HTMLElement>('input, button, textarea, select') ?? null
    box?.scrollIntoView({ block: 'center' })
    target?.focus()
  }
}
