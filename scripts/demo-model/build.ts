// Builds resources/demo-model/ deterministically (npm run build:demo-model): a character tokenizer made from the
// sample dataset, a small random Llama, and full-parameter SFT on every sample question with both stances in equal
// measure, so the model answers in fluent sentences of either stance and DPO has something to choose between.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openModel } from '../../src-main/services/session/modelSession'
import { generateResponses } from '../../src-main/services/session/generateResponses'
import { encodeSafetensors, type NamedTensor } from '../../src-main/services/training/adapterFiles'
import { MT19937 } from '../../src-main/services/training/dataOrder'
import { saveTrainedModel, sftTrain, type SftExample } from '../../src-main/services/training/sft'
import { DEFAULT_SYSTEM_MESSAGE } from '../../src-main/services/tokenizer/chatTemplate'
import { buildDemoTokenizer } from './buildTokenizer'
import { classifyStance } from './stance'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..')
const dataDir = path.join(root, 'resources/sample-dataset')
const outDir = process.env.DEMO_MODEL_OUT ?? path.join(root, 'resources/demo-model')

// The shape: 1.74M parameters, small enough to train in minutes on 2 cores and to commit (bf16, 3.4 MB).
export const DEMO_SHAPE = { hidden: 192, layers: 4, heads: 6, kvHeads: 2, ffn: 512 }
export const DEMO_SFT = { epochs: 40, batchSize: 8, learningRate: 3e-3, warmupRatio: 0.05, seed: 1234 }

const DEMO_README = `# DPO Studio demo model

Made by \`npm run build:demo-model\` (scripts/demo-model/build.ts), not downloaded: a Llama-architecture model of about
1.7M parameters (hidden 192, 4 layers, 6 heads, 2 KV heads, FFN 512, tied embeddings, bf16 weights) with a character
tokenizer built from resources/sample-dataset (byte fallback for anything else). It was trained from random weights
with full-parameter SFT on the 60 sample questions, each answered once with its support and once with its oppose
answer, so it answers in short sentences of either stance. DPO then moves it to the side that support_ratio prefers.

It exists so that the app and \`dpo-studio run\` work out of the box in about a minute on any machine, and so the tests
can prove that training changes behaviour. It knows nothing but this one debate. Rebuilding on the same kind of
machine reproduces the weights exactly (the engine's CPU arithmetic is deterministic; a different CPU or compiler
may change the last bits).
`

interface Row {
  id: number
  prompt: string
  support: string
  oppose: string
}
const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T

/** Normal(0, std) draws from MT19937 via Box-Muller: deterministic on every machine. */
function normals(gen: MT19937, n: number, std: number): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i += 2) {
    const u1 = (gen.nextUint32() + 1) / 4294967297
    const u2 = gen.nextUint32() / 4294967296
    const r = Math.sqrt(-2 * Math.log(u1)) * std
    out[i] = r * Math.cos(2 * Math.PI * u2)
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2)
  }
  return out
}

function randomWeights(vocab: number): NamedTensor[] {
  const { hidden: C, layers, heads, kvHeads, ffn: F } = DEMO_SHAPE
  const HD = C / heads
  const gen = new MT19937(20261124)
  const t: NamedTensor[] = []
  const add = (name: string, shape: number[], std: number | 'ones') => {
    const n = shape.reduce((a, b) => a * b, 1)
    t.push({ name, dtype: 'F32', shape, data: std === 'ones' ? new Float32Array(n).fill(1) : normals(gen, n, std) })
  }
  add('model.embed_tokens.weight', [vocab, C], 0.02)
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`
    add(`${p}.input_layernorm.weight`, [C], 'ones')
    add(`${p}.post_attention_layernorm.weight`, [C], 'ones')
    add(`${p}.self_attn.q_proj.weight`, [heads * HD, C], 0.02)
    add(`${p}.self_attn.k_proj.weight`, [kvHeads * HD, C], 0.02)
    add(`${p}.self_attn.v_proj.weight`, [kvHeads * HD, C], 0.02)
    add(`${p}.self_attn.o_proj.weight`, [C, heads * HD], 0.02)
    add(`${p}.mlp.gate_proj.weight`, [F, C], 0.02)
    add(`${p}.mlp.up_proj.weight`, [F, C], 0.02)
    add(`${p}.mlp.down_proj.weight`, [C, F], 0.02)
  }
  add('model.norm.weight', [C], 'ones')
  return t
}

async function main(): Promise<void> {
  const started = Date.now()
  const zh = readJson<Row[]>(path.join(dataDir, 'zh/labelled_data.json'))
  const zhTest = readJson<Array<{ id: number; prompt: string }>>(path.join(dataDir, 'zh/test_prompt.json'))
  const en = readJson<Row[]>(path.join(dataDir, 'en/labelled_data.json'))
  const enTest = readJson<Array<{ id: number; prompt: string }>>(path.join(dataDir, 'en/test_prompt.json'))
  const texts = [
    DEFAULT_SYSTEM_MESSAGE,
    ...[...zh, ...en].flatMap((r) => [r.prompt, r.support, r.oppose]),
    ...[...zhTest, ...enTest].map((r) => r.prompt),
  ]
  const { tokenizerJson, tokenizerConfig } = buildDemoTokenizer(texts)
  const vocab = (tokenizerJson as { model: { vocab: Record<string, number> } }).model.vocab
  const vocabSize = Object.keys(vocab).length

  // 1. A random model in a scratch directory.
  const scratch = path.join(os.tmpdir(), `dpo-demo-${process.pid}`)
  rmSync(scratch, { recursive: true, force: true })
  mkdirSync(scratch, { recursive: true })
  const { hidden, layers, heads, kvHeads, ffn } = DEMO_SHAPE
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: hidden / heads,
    intermediate_size: ffn,
    vocab_size: vocabSize,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 2,
    torch_dtype: 'float32',
    _name_or_path: 'dpo-studio/demo-model',
  }
  writeFileSync(path.join(scratch, 'config.json'), JSON.stringify(config, null, 2) + '\n')
  writeFileSync(
    path.join(scratch, 'generation_config.json'),
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 2 }, null, 2) + '\n',
  )
  writeFileSync(path.join(scratch, 'tokenizer.json'), JSON.stringify(tokenizerJson))
  writeFileSync(path.join(scratch, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n')
  writeFileSync(path.join(scratch, 'model.safetensors'), encodeSafetensors(randomWeights(vocabSize)))

  // 2. SFT on both stances of every sample question, equally.
  const session = await openModel(scratch, { quant: 'none', backend: 'cpu' })
  const examples: SftExample[] = zh.flatMap((r) => [
    { prompt: r.prompt, answer: r.support },
    { prompt: r.prompt, answer: r.oppose },
  ])
  console.log(
    `demo model: ${(session.info.params / 1e6).toFixed(2)}M parameters, vocabulary ${vocabSize}, ${examples.length} SFT examples`,
  )
  await sftTrain(session, examples, {
    ...DEMO_SFT,
    onStep: ({ step, totalSteps, loss }) => {
      if (step % 20 === 0 || step === totalSteps)
        console.log(`  sft step ${step}/${totalSteps} loss ${loss.toFixed(4)}`)
    },
  })
  saveTrainedModel(session, outDir, { bf16: true })
  session.dispose()
  writeFileSync(path.join(outDir, 'README.md'), DEMO_README)
  rmSync(scratch, { recursive: true, force: true })

  // 3. How it answers the held-out prompts (bf16 weights as saved).
  const demo = await openModel(outDir, { quant: 'none', backend: 'cpu' })
  const answers = await generateResponses(demo, { prompts: zhTest, maxNewTokens: 48 })
  for (const a of answers) console.log(`  [${classifyStance(a.response, zh)}] ${a.prompt} -> ${a.response}`)
  demo.dispose()
  console.log(`wrote ${outDir} in ${((Date.now() - started) / 1000).toFixed(0)} s`)
}

if (process.argv[1] && process.argv[1].endsWith('build.ts')) await main()
