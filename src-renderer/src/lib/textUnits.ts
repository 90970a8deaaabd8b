// What to count in an answer (issue 12 item 15): Chinese, Japanese and Korean text has no spaces between words, and a
// word count from a segmenter means little to a reader there, so such text is counted in characters.
import { charLength } from './format'

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u
const LETTER = /[\p{L}\p{N}]/u

/** More than half of the letters and digits are CJK characters. */
export function isCjkText(text: string): boolean {
  let cjk = 0
  let letters = 0
  for (const ch of text) {
    if (!LETTER.test(ch)) continue
    letters++
    if (CJK.test(ch)) cjk++
  }
  return letters > 0 && cjk * 2 > letters
}

/** Characters without spaces and punctuation: what "N chars" counts in a diff. */
export function textChars(text: string): number {
  return charLength(text.replace(/[\s\p{P}\p{S}]/gu, ''))
}
