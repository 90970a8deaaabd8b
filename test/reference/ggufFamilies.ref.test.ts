// GGUF export of every tested family (docs/model-families.md), checked with the real llama.cpp on the families' tiny
// twins (`dpo-tool make-model`: the real configs shrunk, random bf16 weights, the real tokenizers): byte-level
// vocabularies ("llama-bpe" for Llama 3, "qwen2" for Qwen) and SentencePiece-style ones with byte fallback (Mistral,
// Breeze's 61,952 padded), the "llama" architecture's permuted q/k, Llama 3's rope_freqs (factor 8 and 32), Qwen2's
// biases, Qwen3's q/k norms and head_dim apart from hidden/heads, tied and untied heads. Per family: llama.cpp
// tokenizes the chat-templated HW6 prompts as we do; the LoRA GGUF on the F32 base GGUF decodes our base + adapter;
// the merged F16 GGUF decodes our greedy tokens on the merged model (in the base's bf16, which the F16 file holds up
// to fp16's range); the Q4_0 GGUF stays close to our log-probs under teacher forcing, and computes what our engine
// computes on the weights decoded from it. In the reference suite (not npm test) for its run time: llama.cpp takes
// most of a minute per family to load the 128k-152k-token vocabularies of three files on 2 cores.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import { exportGguf } from '../../src-main/services/export/ggufExport'
import { readGguf } from '../../src-main/services/export/ggufFile'
import { exportMergedModel } from '../../src-main/services/export/mergedModel'
import { promptIds, renderPrompt } from '../../src-main/services/tokenizer/chatTemplate'
import { loadAdapter } from '../../src-main/services/training/adapterFiles'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { randomAdapter } from '../helpers/exportFixtures'
import { ggufAsHfFolder } from '../helpers/ggufWeights'
import {
  disposeLlama,
  forcedStats,
  greedyParting,
  llamaGreedy,
  llamaTokenize,
  ourForcedLogps,
} from '../helpers/llamaCpp'
import { tempDir } from '../helpers/modelFixtures'
import { sharedPath } from '../helpers/sharedPath'
import { FAMILIES, familyModel } from '../helpers/familyModels'

const NEW_TOKENS = 12
/** Teacher-forced positions per prompt (llama.cpp hands back every token's probability: 152k per position). */
const FORCED_TOKENS = 8
/**
 * Greedy tokens equal ours up to a near-tie (our two candidates within this many nats): in F32 files only fp32
 * summation order differs; in F16 files llama.cpp also rounds the activations to fp16 before each matmul.
 */
const NEAR_TIE = { F32: 1e-4, F16: 1e-2 }
/**
 * Q4_0 under teacher forcing on our greedy answers of the merged model: mean |d log p|. Against the unquantized model
 * this is 4-bit rounding of 32-64-wide random matrices, large, and its top-1 agreement is too noisy on these flat
 * distributions to bound (measured 2026-12-02: 0.14-1.14 nats, agreement 0.19-0.81; printed). Against our engine on the
 * weights decoded from the file it is only llama.cpp's 8-bit activations (mean 0.013-0.076, max 0.045-0.32); a
 * wrongly written block would be nats off.
 */
const Q4_0_BOUNDS = { quantized: { mean: 2 }, file: { mean: 0.1, max: 0.5 } }
/** The day the Llama 3.x templates print (strftime_now): the day Q4_0_BOUNDS were measured. */
const CHAT_DATE = '2026-12-02'
/** Per family twin: tokenizer.ggml.model, tokenizer.ggml.pre, general.architecture, and whether rope_freqs is written. */
const EXPECTED: Record<string, [string, string, string, boolean]> = {
  'llama-3.2-1b-instruct': ['gpt2', 'llama-bpe', 'llama', true],
  'llama-3.1-8b-instruct': ['gpt2', 'llama-bpe', 'llama', true],
  'qwen2.5-0.5b-instruct': ['gpt2', 'qwen2', 'qwen2', false],
  'qwen3-0.6b': ['gpt2', 'qwen2', 'qwen3', false],
  'mistral-7b-instruct-v0.3': ['llama', 'default', 'llama', false],
  'breeze-7b-instruct-v1_0': ['llama', 'default', 'llama', false],
}

afterAll(async () => disposeLlama())

describe.each(FAMILIES.map((f) => [f] as const))('%s', (name) => {
  it('llama.cpp tokenizes our prompts as we do; greedy tokens of the F32 base + LoRA and of the merged F16 equal ours; Q4_0 stays close', async () => {
    const model = familyModel(name)
    const adapter = await randomAdapter(model, {
      targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'],
      bScale: 0.2,
    })
    const root = tempDir('dpo-gguf-family-')
    const out = await exportGguf({
      modelDir: model,
      adapterDir: adapter.dir,
      mergeBase: 'original',
      types: ['F16', 'Q4_0'],
      baseType: 'F32',
      outDir: path.join(root, 'gguf'),
    })
    const merged = path.join(root, 'merged')
    await exportMergedModel({ modelDir: model, adapterDir: adapter.dir, mergeBase: 'original', outDir: merged })
    const file = (type: string) => out.models.find((m) => m.merged && m.type === type)!.file
    const base = out.models.find((m) => !m.merged)!.file
    const meta = readGguf(file('F16')).metadata
    const config = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8')) as { vocab_size: number }
    const hasRopeFreqs = readGguf(file('F16')).tensors.some((t) => t.name === 'rope_freqs.weight')
    expect([
      meta.get('tokenizer.ggml.model'),
      meta.get('tokenizer.ggml.pre'),
      meta.get('general.architecture'),
      hasRopeFreqs,
    ]).toEqual(EXPECTED[name])
    expect((meta.get('tokenizer.ggml.tokens') as string[]).length).toBe(config.vocab_size)

    const tok = await TextTokenizer.fromDir(merged)
    const questions = [
      ...(await loadPromptsFile(sharedPath('datasets/genai-hw6/test_prompt.json'))).slice(0, 3).map((p) => p.prompt),
      'The little dog ran to the park and',
    ]
    // One fixed template date: Llama 3.2's template prints today's date (strftime_now), so without it the prompts, the
    // greedy answers and the Q4_0 statistics below changed with the calendar (this twin's file mean went from 0.076 on
    // 2026-12-02 to 0.116 on 2026-12-03, over its bound). The bounds were measured on this date.
    const prompts = questions.map((q) => {
      const text = renderPrompt(tok, q, { chatDate: CHAT_DATE }).text
      return { text, ids: promptIds(tok, text) }
    })
    for (const p of prompts) expect(await llamaTokenize(file('F16'), p.text), p.text).toEqual(p.ids)

    const mergedModel = await loadAddon().loadModel(merged, { quant: 'none', backend: 'cpu' })
    const withAdapter = await loadAddon().loadModel(model, { quant: 'none', backend: 'cpu' })
    try {
      const a = loadAdapter(adapter.dir)
      withAdapter.attachLora({
        targets: a.settings.targets,
        r: a.settings.r,
        alpha: a.settings.alpha,
        dropout: 0,
        seed: 0,
      })
      withAdapter.setLoraTensors(a.tensors)
      let ties = 0
      const cases = [
        ['base F32 + LoRA', withAdapter, base, out.lora!, NEAR_TIE.F32],
        ['merged F16', mergedModel, file('F16'), undefined, NEAR_TIE.F16],
      ] as const
      const greedyOf = new Map<unknown, number[][]>()
      for (const [what, ours, gguf, lora, nearTie] of cases) {
        if (!greedyOf.has(ours))
          greedyOf.set(
            ours,
            (
              await ours.generate(
                prompts.map((p) => p.ids),
                { maxNewTokens: NEW_TOKENS, eosIds: [...tok.eosIds] },
              )
            ).tokens.map((t) => [...t]),
          )
        const greedy = greedyOf.get(ours)!
        for (const [i, p] of prompts.entries()) {
          const parting = await greedyParting(ours, p.ids, greedy[i]!, await llamaGreedy(gguf, p.ids, NEW_TOKENS, lora))
          if (!parting) continue
          console.log(
            `${name} ${what}: prompt ${i} parts at token ${parting.at}, our margin ${parting.margin.toExponential(2)} nats`,
          )
          expect(parting.margin, `${what}: ${p.text}`).toBeLessThan(nearTie)
          ties++
        }
      }
      expect(ties).toBeLessThanOrEqual(1)

      const forced = []
      for (const [i, p] of prompts.entries()) {
        const continuation = greedyOf
          .get(mergedModel)!
          [i]!.filter((t) => !tok.eosIds.includes(t))
          .slice(0, FORCED_TOKENS)
        forced.push({ prompt: p.ids, continuation, ours: await ourForcedLogps(mergedModel, p.ids, continuation) })
      }
      const q4 = await forcedStats(file('Q4_0'), forced)
      const decoded = await loadAddon().loadModel(ggufAsHfFolder(file('Q4_0'), merged, path.join(root, 'q4-decoded')), {
        quant: 'none',
        backend: 'cpu',
      })
      const fileCases = []
      for (const c of forced) fileCases.push({ ...c, ours: await ourForcedLogps(decoded, c.prompt, c.continuation) })
      decoded.dispose()
      const q4File = await forcedStats(file('Q4_0'), fileCases)
      console.log(
        `${name} Q4_0: vs the merged model mean |d log p| ${q4.mean.toExponential(2)}, top-1 agreement ${q4.agree.toFixed(3)} over ${q4.positions} positions; ` +
          `vs its decoded weights mean ${q4File.mean.toExponential(2)}, max ${q4File.max.toExponential(2)}`,
      )
      expect(q4.mean).toBeLessThan(Q4_0_BOUNDS.quantized.mean)
      expect(q4File.mean).toBeLessThan(Q4_0_BOUNDS.file.mean)
      expect(q4File.max).toBeLessThan(Q4_0_BOUNDS.file.max)
    } finally {
      mergedModel.dispose()
      withAdapter.dispose()
    }
  }, 300_000)
})
