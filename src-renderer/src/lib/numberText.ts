// Number fields keep the text as typed; this is the one place that text becomes a number (docs/app.md, "Number
// fields"). Plain decimal and exponent forms only: "0x10", "Infinity", "1,5" and "" are errors, never a fallback.

export type NumberParse = { ok: true; value: number } | { ok: false; error: string }

/** Digits with an optional sign, decimal point (".05", "5.") and exponent ("1e-10", "2E4"). */
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i

export function parseNumberText(text: string): NumberParse {
  const t = text.trim()
  if (t === '') return { ok: false, error: 'Empty: enter a number' }
  if (/^[+-]?\d*,\d+$/.test(t)) return { ok: false, error: `Use a dot for decimals: ${t.replace(',', '.')}` }
  if (!NUMBER.test(t)) return { ok: false, error: `“${t}” is not a number` }
  const value = Number(t)
  if (!Number.isFinite(value)) return { ok: false, error: `${t} is too large` }
  return { ok: true, value }
}

/** How a number is shown when the field has no text of the user's own (a preset, Reset, the slider). */
export function formatNumber(value: number): string {
  return String(value)
}

/** The text a field shows for a stored value: a number, or text that did not parse (kept so its error can show). */
export function numberFieldText(value: unknown): string {
  return typeof value === 'number' ? formatNumber(value) : typeof value === 'string' ? value : ''
}
