// Word-level diff that works for Chinese: Intl.Segmenter splits both texts into words (dictionary-based for CJK,
// spaces and punctuation kept as their own segments), then the `diff` package aligns the two token lists (Myers).
import { diffArrays } from 'diff'

export interface DiffPart {
  text: string
  kind: 'same' | 'added' | 'removed'
}

export interface WordDiff {
  parts: DiffPart[]
  added: number
  removed: number
  same: number
}

const segmenters = new Map<string, Intl.Segmenter>()

/** Splits text into word and non-word segments; concatenating them gives the text back. */
export function segmentWords(text: string, locale = 'zh-Hant'): string[] {
  let seg = segmenters.get(locale)
  if (!seg) {
    seg = new Intl.Segmenter(locale, { granularity: 'word' })
    segmenters.set(locale, seg)
  }
  return Array.from(seg.segment(text), (s) => s.segment)
}

export function wordDiff(before: string, after: string, locale?: string): WordDiff {
  const changes = diffArrays(segmentWords(before, locale), segmentWords(after, locale))
  const parts: DiffPart[] = []
  let added = 0
  let removed = 0
  let same = 0
  for (const c of changes) {
    const text = c.value.join('')
    const words = c.value.filter((w) => w.trim() !== '').length
    const kind = c.added ? 'added' : c.removed ? 'removed' : 'same'
    if (kind === 'added') added += words
    else if (kind === 'removed') removed += words
    else same += words
    const last = parts[parts.length - 1]
    if (last && last.kind === kind) last.text += text
    else parts.push({ text, kind })
  }
  return { parts, added, removed, same }
}
