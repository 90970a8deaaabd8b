// Word-level diff for the Responses view: Intl.Segmenter words (Chinese included) aligned by the `diff` package.
import { describe, expect, it } from 'vitest'
import { segmentWords, wordDiff } from '../../../src-renderer/src/lib/wordDiff'

describe('wordDiff', () => {
  it('segments Chinese into words, and the segments rebuild the text', () => {
    const text = '真人化能夠呈現更真實的角色形象，提升原作魅力。'
    const words = segmentWords(text)
    expect(words.join('')).toBe(text)
    expect(words.length).toBeGreaterThan(5)
    expect(words.length).toBeLessThan(text.length)
  })

  it('marks removed and added words, not whole sentences', () => {
    const d = wordDiff('真人化能夠提升原作魅力。', '真人化可能損害原作魅力。')
    const removed = d.parts
      .filter((p) => p.kind === 'removed')
      .map((p) => p.text)
      .join('')
    const added = d.parts
      .filter((p) => p.kind === 'added')
      .map((p) => p.text)
      .join('')
    expect(removed).not.toContain('真人化')
    expect(added).not.toContain('原作')
    expect(
      d.parts
        .filter((p) => p.kind !== 'added')
        .map((p) => p.text)
        .join(''),
    ).toBe('真人化能夠提升原作魅力。')
    expect(
      d.parts
        .filter((p) => p.kind !== 'removed')
        .map((p) => p.text)
        .join(''),
    ).toBe('真人化可能損害原作魅力。')
    expect(d.added).toBeGreaterThan(0)
    expect(d.removed).toBeGreaterThan(0)
  })

  it('works for English and for identical or empty texts', () => {
    const d = wordDiff('the cat sat', 'the dog sat')
    expect(d.parts).toEqual([
      { text: 'the ', kind: 'same' },
      { text: 'cat', kind: 'removed' },
      { text: 'dog', kind: 'added' },
      { text: ' sat', kind: 'same' },
    ])
    expect(wordDiff('same', 'same')).toMatchObject({ added: 0, removed: 0, same: 1 })
    expect(wordDiff('', '').parts).toEqual([])
  })
})
