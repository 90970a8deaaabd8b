// Which side an answer takes: the stance of its nearest sample answer by character-bigram overlap (Dice
// coefficient). Used by the demo-model script, the tests that check DPO moved the answers, and the Responses view
// (stance labels while the built-in sample dataset is open). Pure: no Node imports, so the renderer can use it.
export interface StanceRow {
  support: string
  oppose: string
}

function bigrams(s: string): Map<string, number> {
  const chars = Array.from(s.replace(/\s+/g, ''))
  const m = new Map<string, number>()
  for (let i = 0; i + 1 < chars.length; i++) {
    const g = chars[i]! + chars[i + 1]!
    m.set(g, (m.get(g) ?? 0) + 1)
  }
  return m
}

export function similarity(a: string, b: string): number {
  const x = bigrams(a),
    y = bigrams(b)
  let shared = 0,
    total = 0
  for (const [g, n] of x) {
    shared += Math.min(n, y.get(g) ?? 0)
    total += n
  }
  for (const n of y.values()) total += n
  return total === 0 ? 0 : (2 * shared) / total
}

/** 'support' or 'oppose': the side of the most similar sample answer. */
export function classifyStance(answer: string, rows: readonly StanceRow[]): 'support' | 'oppose' {
  let best = -1
  let side: 'support' | 'oppose' = 'support'
  for (const r of rows) {
    const s = similarity(answer, r.support),
      o = similarity(answer, r.oppose)
    if (s > best) {
      best = s
      side = 'support'
    }
    if (o > best) {
      best = o
      side = 'oppose'
    }
  }
  return side
}
