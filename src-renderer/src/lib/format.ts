// Small formatters for sizes, counts, durations and metric values shown across the views.
export function bytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`
}

export function count(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '—'
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 2)} M`
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)} K`
  return String(n)
}

export function duration(s: number | null | undefined): string {
  if (s == null || !Number.isFinite(s) || s < 0) return '—'
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

export function metric(v: number | null | undefined, digits = 4): string {
  if (v == null || !Number.isFinite(v)) return '—'
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2)
  return v.toFixed(digits)
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = new Date(iso)
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  })
}

/** Last path segment(s) for compact display. */
export function shortPath(p: string | null | undefined, segments = 2): string {
  if (!p) return '—'
  const parts = p.split(/[\\/]+/).filter(Boolean)
  return parts.length <= segments ? p : `…/${parts.slice(-segments).join('/')}`
}

/** Characters as a person counts them (grapheme clusters, so 漢字 and emoji count once). */
export function charLength(text: string): number {
  const seg = new Intl.Segmenter(undefined, { granularity: 'grapheme' })
  let n = 0
  for (const _ of seg.segment(text)) n++
  return n
}
