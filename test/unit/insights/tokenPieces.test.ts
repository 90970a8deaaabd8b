// The token view's text per token, with real tokenizers: Mistral (SentencePiece with byte fallback: rare CJK
// characters and emoji become several <0xNN> tokens) and Qwen2.5 (byte-level BPE: one character may span tokens).
// Joined, the pieces are the decoded answer; a token that ends inside a character shows nothing and the token that
// completes it carries the whole character.
import { describe, expect, it } from 'vitest'
import { scoredTokenIds, tokenPieces } from '../../../src-main/services/insights/tokenPieces'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../../helpers/sharedPath'

const TEXT = '市中心禁車，能減少廢氣排放。🚗 Cars out! 𠮷野家'

describe('tokenPieces', () => {
  for (const name of ['mistral-v0.1', 'qwen2.5']) {
    it(`${name}: pieces join to the decoded text, one per token, multi-byte characters whole`, async () => {
      const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', name))
      const ids = tok.encode(TEXT, { addSpecialTokens: false })
      const pieces = tokenPieces(tok, ids)
      expect(pieces).toHaveLength(ids.length)
      expect(pieces.join('')).toBe(tok.decode(ids))
      // No piece holds half a character (U+FFFD); characters made of several tokens appear whole in one piece.
      expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false)
      for (const ch of ['氣', '🚗', '𠮷'])
        expect(
          pieces.filter((p) => p.includes(ch)),
          ch,
        ).toHaveLength(1)
      if (name === 'mistral-v0.1') {
        // 氣 is three byte tokens here (<0xE6> <0xB0> <0xA3>): the first two add nothing, the third the character.
        const at = pieces.indexOf('氣')
        expect(tok.idsToTokens(ids.slice(at - 2, at + 1))).toEqual(['<0xE6>', '<0xB0>', '<0xA3>'])
        expect(pieces.slice(at - 2, at + 1)).toEqual(['', '', '氣'])
      }
    })
  }

  it('keeps the written form of special tokens (the EOS that ends every scored answer)', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'mistral-v0.1'))
    const ids = [...tok.encode('好', { addSpecialTokens: false }), tok.eosId!]
    expect(tokenPieces(tok, ids).at(-1)).toBe('</s>')
  })
})

describe('scoredTokenIds', () => {
  it('takes ids[t] wherever labels[t] is set, t >= 1: the tokens the engine scores', () => {
    expect(scoredTokenIds({ ids: [1, 5, 6, 7, 2], labels: [-100, -100, 6, 7, 2] })).toEqual([6, 7, 2])
    // Position 0 is never scored (nothing predicts it).
    expect(scoredTokenIds({ ids: [9, 5], labels: [9, 5] })).toEqual([5])
  })
})
