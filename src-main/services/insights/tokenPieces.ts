// The answer tokens of a scored sequence and the text each one adds, for the token heat map (docs/insights.md):
// CJK and other multi-byte text appears per token exactly as the tokenizer split it.
import type { ScoredSequence } from '../../addon/addonTypes'
import type { TextTokenizer } from '../tokenizer/textTokenizer'

const REPLACEMENT_CHAR = '\uFFFD'

/**
 * The token ids the engine scores, in order: ids[t] for every t >= 1 with labels[t] != -100 (logits at t − 1 score
 * labels[t]; native/src/model/logps.cpp), i.e. the answer and its EOS.
 */
export function scoredTokenIds(seq: ScoredSequence): number[] {
  const out: number[] = []
  for (let t = 1; t < seq.labels.length; t++) if (seq.labels[t] !== -100) out.push(seq.ids[t]!)
  return out
}

/**
 * What each token adds to the decoded text: decode the first k ids, take what is new since k − 1. A byte-fallback
 * token that ends inside a multi-byte character adds '' and the token that completes it carries the character;
 * special tokens (EOS) keep their written form. If a decoder ever rewrites earlier text, that token falls back to
 * its vocabulary string.
 */
export function tokenPieces(tok: Pick<TextTokenizer, 'decode' | 'idToToken'>, ids: readonly number[]): string[] {
  const out: string[] = []
  let shown = ''
  for (let k = 0; k < ids.length; k++) {
    let full = tok.decode(ids.slice(0, k + 1), { skipSpecialTokens: false })
    const last = k === ids.length - 1
    if (!last) {
      let end = full.length
      while (end > 0 && full[end - 1] === REPLACEMENT_CHAR) end--
      full = full.slice(0, end)
    }
    if (full.startsWith(shown)) {
      out.push(full.slice(shown.length))
      shown = full
    } else if (shown.startsWith(full)) {
      // Byte fallback decodes a run of byte tokens together: a complete character followed by an incomplete one
      // decodes as replacement characters until the run completes, so the text seems to shrink. Nothing new yet.
      out.push('')
    } else {
      out.push(tok.idToToken(ids[k]!) ?? '')
    }
  }
  return out
}
