// Y-axis labels for the live charts (issue 12 item 15): one number format per axis, with just enough digits that
// neighbouring ticks differ, and a visible range when every point has the same value (a run at step 1).

export interface AxisRange {
  /** Set only when the data has (almost) no spread: the chart would otherwise label one value five times. */
  min?: number
  max?: number
  format: (v: number) => string
}

/** The axis for these values: percent (0..1 shown as %), or plain numbers. */
export function yAxisFor(values: number[], percent = false): AxisRange {
  const finite = values.filter(Number.isFinite)
  if (!finite.length) return { format: (v) => (percent ? `${Math.round(v * 100)}%` : String(v)) }
  let lo = Math.min(...finite)
  let hi = Math.max(...finite)
  const mid = (lo + hi) / 2
  const flat = hi - lo <= Math.max(Math.abs(mid) * 1e-6, 1e-12)
  let range: Pick<AxisRange, 'min' | 'max'> = {}
  if (flat) {
    // 5% of the value either side (or 0.05 around 0): enough room for distinct, readable ticks.
    const pad = percent ? 0.05 : Math.abs(mid) > 0 ? Math.abs(mid) * 0.05 : 0.05
    lo = mid - pad
    hi = mid + pad
    range = { min: lo, max: hi }
  }
  const span = hi - lo
  const maxAbs = Math.max(Math.abs(lo), Math.abs(hi))
  // ECharts picks "nice" tick intervals of at least about span / 10.
  const tick = span / 10
  if (percent) {
    const d = clamp(Math.ceil(-Math.log10(tick * 100)), 0, 3)
    return { ...range, format: (v) => `${(v * 100).toFixed(d)}%` }
  }
  if (maxAbs < 1e-3) {
    const d = clamp(Math.ceil(Math.log10(maxAbs / tick)), 1, 4)
    return { ...range, format: (v) => (v === 0 ? '0' : v.toExponential(d)) }
  }
  const d = clamp(Math.ceil(-Math.log10(tick)), 0, 6)
  return { ...range, format: (v) => v.toFixed(d) }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Number.isFinite(x) ? x : lo))
}
