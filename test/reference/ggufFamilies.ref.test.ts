// GGUF export of each tokenizer kind and architecture llama.cpp tells apart (docs/exports.md, "GGUF"), checked with
// the real llama.cpp on tiny random checkpoints with real tokenizers: Qwen2.5 (byte-level "qwen2" vocabulary, q/k/v
// biases, tied embeddings, no q/k permutation), Llama 3.1 (byte-level "llama-bpe", untied, permuted q/k) and Mistral
// v0.1 (SentencePiece-style with byte fallback). Per family: llama.cpp tokenizes the chat-templated HW6 prompts as we
// do, the F32 GGUF decodes our greedy tokens on the merged model (in the base's bf16, as the GGUF holds it), and the
// LoRA GGUF on the base GGUF decodes our base + adapter. In the reference suite (not npm test) for its run time: the
// 128k-152k-token vocabularies take most of a minute to load and convert on 2 cores.
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadNative } from '../../src-main/engine/loadNative'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import { exportGguf } from '../../src-main/services/export/ggufExport'
import { readGguf } from '../../src-main/services/export/ggufFile'
import { exportMergedModel } from '../../src-main/services/export/mergedModel'
import { promptIds, renderPrompt } from '../../src-main/services/tokenizer/chatTemplate'
import { loadAdapter } from '../../src-main/services/training/adapterFiles'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { randomAdapter } from '../helpers/exportFixtures'
import { disposeLlama, greedyParting, llamaGreedy, llamaTokenize } from '../helpers/llamaCpp'
import { tempDir } from '../helpers/modelFixtures'
import { sharedPath } from '../helpers/sharedPath'
import { TINY_FAMILIES, makeTinyFamily } from '../helpers/tinyFamilies'

const NEW_TOKENS = 12
/** Greedy tokens equal ours up to a near-tie (two tokens within this many nats), where fp32 summation order decides. */
const NEAR_TIE = 1e-4
const EXPECTED = { 'qwen2.5': ['gpt2', 'qwen2', 'qwen2'], 'llama-3.1': ['gpt2', 'llama-bpe', 'llama'], 'mistral-v0.1': ['llama', 'default', 'llama'] } as Record<string, string[]>

afterAll(async () => disposeLlama())

describe.each(TINY_FAMILIES.map((f) => [f.name, f] as const))('%s', (name, family) => {
  it('llama.cpp tokenizes our prompts as we do; F32 greedy tokens and the LoRA on the base equal ours', async () => {
    const model = makeTinyFamily(family)
    const adapter = await randomAdapter(model, { targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'down_proj'], bScale: 0.2 })
    const root = tempDir('dpo-gguf-family-')
    const out = await exportGguf({ modelDir: model, adapterDir: adapter.dir, mergeBase: 'original', types: ['F32'], baseType: 'F32', outDir: path.join(root, 'gguf') })
    const merged = path.join(root, 'merged')
    await exportMergedModel({ modelDir: model, adapterDir: adapter.dir, mergeBase: 'original', outDir: merged })
    const file = out.models.find((m) => m.merged)!.file
    const base = out.models.find((m) => !m.merged)!.file
    const meta = readGguf(file).metadata
    expect([meta.get('tokenizer.ggml.model'), meta.get('tokenizer.ggml.pre'), meta.get('general.architecture')]).toEqual(EXPECTED[name])
    expect((meta.get('tokenizer.ggml.tokens') as string[]).length).toBe((family.config as { vocab_size: number }).vocab_size)

    const tok = await TextTokenizer.fromDir(merged)
    const questions = [...(await loadPromptsFile(sharedPath('datasets/genai-hw6/test_prompt.json'))).slice(0, 3).map((p) => p.prompt), 'The little dog ran to the park and']
    const prompts = questions.map((q) => {
      const text = renderPrompt(tok, q).text
      return { text, ids: promptIds(tok, text) }
    })
    for (const p of prompts) expect(await llamaTokenize(file, p.text), p.text).toEqual(p.ids)

    const mergedModel = await loadNative().loadModel(merged, { quant: 'none', backend: 'cpu' })
    const withAdapter = await loadNative().loadModel(model, { quant: 'none', backend: 'cpu' })
    try {
      const a = loadAdapter(adapter.dir)
      withAdapter.attachLora({ targets: a.settings.targets, r: a.settings.r, alpha: a.settings.alpha, dropout: 0, seed: 0 })
      withAdapter.setLoraTensors(a.tensors)
      let ties = 0
      const cases = [['merged F32', mergedModel, file, undefined], ['base + LoRA', withAdapter, base, out.lora!]] as const
      for (const [what, ours, gguf, lora] of cases) {
        const greedy = (await ours.generate(prompts.map((p) => p.ids), { maxNewTokens: NEW_TOKENS, eosIds: [...tok.eosIds] })).tokens.map((t) => [...t])
        for (const [i, p] of prompts.entries()) {
          const parting = await greedyParting(ours, p.ids, greedy[i]!, await llamaGreedy(gguf, p.ids, NEW_TOKENS, lora))
          if (!parting) continue
          console.log(`${name} ${what}: prompt ${i} parts at token ${parting.at}, our margin ${parting.margin.toExponential(2)} nats`)
          expect(parting.margin, `${what}: ${p.text}`).toBeLessThan(NEAR_TIE)
          ties++
        }
      }
      expect(ties).toBeLessThanOrEqual(1)
    } finally {
      mergedModel.dispose()
      withAdapter.dispose()
    }
  }, 300_000)
})
