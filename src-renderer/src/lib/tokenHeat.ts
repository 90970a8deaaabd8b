// The token heat map's arithmetic (docs/insights.md): each token's change in log-prob (trained − reference), a
// colour for it on a scale shared by the answers shown together, how a token is written, and the largest changes.
import type { TokenSide } from '@shared/api/contract'

export interface HeatToken {
  /** Position among the answer's scored tokens. */
  k: number
  id: number
  text: string
  ref: number | null
  trained: number | null
  /** trained − ref; null when either is −∞. */
  delta: number | null
}

export function heatTokens(side: TokenSide): HeatToken[] {
  return side.ids.map((id, k) => {
    const ref = side.ref[k] ?? null
    const trained = side.trained[k] ?? null
    return {
      k,
      id,
      text: side.text[k] ?? '',
      ref,
      trained,
      delta: ref === null || trained === null ? null : trained - ref,
    }
  })
}

/** The largest |change| over the answers shown together, so one colour means one amount everywhere (at least 0.01). */
export function heatScale(sides: ReadonlyArray<TokenSide | null | undefined>): number {
  let m = 0.01
  for (const s of sides)
    for (const t of s ? heatTokens(s) : []) if (t.delta !== null) m = Math.max(m, Math.abs(t.delta))
  return m
}

/** Up = green, down = red, alpha by |delta| / scale (a square root, so small changes stay visible). */
export function heatColor(delta: number | null, scale: number): string {
  if (delta === null) return 'rgba(139, 149, 165, 0.35)'
  const a = Math.min(1, Math.sqrt(Math.abs(delta) / scale)) * 0.85
  return delta >= 0 ? `rgba(15, 157, 107, ${a.toFixed(3)})` : `rgba(217, 45, 32, ${a.toFixed(3)})`
}

/** How a token is shown: a token that adds no text yet (part of a character) as ·, line breaks as ↵. */
export function tokenLabel(text: string): string {
  if (text === '') return '·'
  return text.replace(/\n/g, '↵')
}

/** The n tokens whose log-prob changed most, largest first. */
export function largestChanges(tokens: readonly HeatToken[], n = 3): HeatToken[] {
  return tokens
    .filter((t) => t.delta !== null)
    .sort((x, y) => Math.abs(y.delta!) - Math.abs(x.delta!) || x.k - y.k)
    .slice(0, n)
}
