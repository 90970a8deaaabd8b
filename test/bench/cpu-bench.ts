// CPU benchmark (not a test): prefill and decode tokens/s of the engine on stories260K and on a generated
// ~100M-parameter Llama in NF4, and DPO training throughput (pairs/s, reference log-probs timed apart) on the demo
// model and on stories260K with the HW6 data. Prints tables and writes build/bench/cpu-bench.json. Run: npm run bench
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

const tool = path.join(repoRoot, 'build/native/dpo-tool')
if (!existsSync(tool)) throw new Error(`${tool} is missing: run npm run build:native first`)
const outDir = path.join(repoRoot, 'build/bench')
mkdirSync(outDir, { recursive: true })

// A random Llama with ~100M parameters (bf16 safetensors), made once.
const big = path.join(outDir, 'llama-100m')
if (!existsSync(path.join(big, 'model.safetensors'))) {
  execFileSync(
    tool,
    [
      'make-model',
      '--out',
      big,
      '--hidden',
      '768',
      '--layers',
      '12',
      '--heads',
      '12',
      '--kv-heads',
      '4',
      '--ffn',
      '2048',
      '--vocab',
      '16000',
    ],
    { stdio: 'inherit' },
  )
}

interface Case {
  name: string
  model: string
  quant: 'nf4' | 'none'
  batch: number
  promptLen: number
  newTokens: number
}
const cases: Case[] = [
  {
    name: 'stories260K',
    model: sharedPath('models/stories260K'),
    quant: 'none',
    batch: 1,
    promptLen: 64,
    newTokens: 128,
  },
  {
    name: 'stories260K',
    model: sharedPath('models/stories260K'),
    quant: 'nf4',
    batch: 1,
    promptLen: 64,
    newTokens: 128,
  },
  { name: 'llama-100m', model: big, quant: 'nf4', batch: 1, promptLen: 64, newTokens: 32 },
  { name: 'llama-100m', model: big, quant: 'nf4', batch: 8, promptLen: 64, newTokens: 32 },
  { name: 'llama-100m', model: big, quant: 'none', batch: 1, promptLen: 64, newTokens: 32 },
]

const results = cases.map((c) => {
  const json = path.join(outDir, `case.json`)
  execFileSync(
    tool,
    [
      'bench',
      '--model',
      c.model,
      '--quant',
      c.quant,
      '--batch',
      String(c.batch),
      '--prompt-len',
      String(c.promptLen),
      '--new',
      String(c.newTokens),
      '--backend',
      'cpu',
      '--json',
      json,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  return { ...c, ...JSON.parse(readFileSync(json, 'utf8')) }
})

const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
console.log(`\nCPU: ${cpu}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}\n`)
console.log('| model | params | quant | batch | prompt | new | prefill tok/s | decode tok/s |')
console.log('|---|---|---|---|---|---|---|---|')
for (const r of results) {
  console.log(
    `| ${r.name} | ${(r.params / 1e6).toFixed(1)}M | ${r.quant} | ${r.batch} | ${r.promptLen} | ${r.newTokens} | ` +
      `${r.prefill_tokens_per_s.toFixed(0)} | ${r.decode_tokens_per_s.toFixed(1)} |`,
  )
}
// DPO training through the real CLI (fresh reference cache, so the reference pass is timed too).
interface TrainCase {
  name: string
  args: string[]
}
const trainCases: TrainCase[] = [
  {
    name: 'demo model, 60 pairs x 4 epochs, nf4',
    args: [
      '--model',
      path.join(repoRoot, 'resources/demo-model'),
      '--dataset',
      path.join(repoRoot, 'resources/sample-dataset/zh'),
      '--data-size',
      '60',
      '--epochs',
      '4',
      '--lr',
      '2e-3',
    ],
  },
  {
    name: 'stories260K, HW6 50 pairs (notebook defaults), nf4',
    args: ['--model', sharedPath('models/stories260K'), '--dataset', sharedPath('datasets/genai-hw6')],
  },
]
const training = trainCases.map((c) => {
  const run = path.join(outDir, 'train-run')
  const cache = path.join(outDir, `ref-cache-${Date.now()}`)
  execFileSync(
    process.execPath,
    [path.join(repoRoot, 'bin/dpo-studio.mjs'), 'train', ...c.args, '--backend', 'cpu', '--out', run],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DPO_STUDIO_CACHE: cache } },
  )
  const s = JSON.parse(readFileSync(path.join(run, 'train_summary.json'), 'utf8'))
  return {
    name: c.name,
    steps: s.global_step,
    pairs: s.pairs_trained,
    pairsPerS: s.pairs_per_s,
    trainS: s.train_runtime,
    referencePairs: s.reference.computed,
    referenceS: s.reference.seconds,
  }
})
console.log('\n| DPO workload | steps | pairs trained | pairs/s | training s | reference pairs | reference s |')
console.log('|---|---|---|---|---|---|---|')
for (const t of training) {
  console.log(
    `| ${t.name} | ${t.steps} | ${t.pairs} | ${t.pairsPerS.toFixed(1)} | ${t.trainS.toFixed(1)} | ${t.referencePairs} | ${t.referenceS.toFixed(2)} |`,
  )
}
writeFileSync(
  path.join(outDir, 'cpu-bench.json'),
  JSON.stringify({ cpu, cores: os.cpus().length, date: new Date().toISOString(), results, training }, null, 2),
)
console.log(`\nwrote ${path.join(outDir, 'cpu-bench.json')}`)
