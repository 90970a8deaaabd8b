// `npm run bench:hw6`: the HW6 workload benchmark (issue 6). Writes the workload (makeWorkload.ts), then runs
// `dpo-tool bench-hw6` on a model directory, which prints a table and writes build/bench/hw6-bench.json.
//   npm run bench:hw6 [-- --model DIR] [--backend auto|cpu|cuda] [--new 200] [--pairs N] [--prompts N]
// The model comes from --model or $DPO_BENCH_MODEL; without either, a small random Mistral with Breeze's vocabulary
// (hidden 256, 4 layers, 8/2 heads, FFN 1024, vocab 61952: the real tokenizer's ids need vocab >= 32000) is made
// once in build/bench/, so the whole pipeline runs on a CPU-only machine in a few minutes. The Breeze-7B shape on a
// GPU is scripts/gpu/session.sh's job (docs/gpu-session.md).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { repoRoot, sharedPath } from '../../test/helpers/sharedPath'
import { describeWorkload, makeWorkload, writeWorkload } from './makeWorkload'

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: process.env.DPO_BENCH_MODEL ?? '' },
    backend: { type: 'string', default: process.env.DPO_BENCH_BACKEND ?? 'auto' },
    new: { type: 'string', default: '200' },
    pairs: { type: 'string' },
    prompts: { type: 'string' },
    tool: { type: 'string', default: process.env.DPO_TOOL ?? path.join(repoRoot, 'build/native/dpo-tool') },
  },
})
if (!existsSync(values.tool)) throw new Error(`${values.tool} is missing: run npm run build:native first`)
const outDir = path.join(repoRoot, 'build/bench')
mkdirSync(outDir, { recursive: true })

const workloadFile = path.join(outDir, 'hw6-workload.json')
const w = await makeWorkload(
  sharedPath('tokenizers', 'mistral-v0.1'),
  sharedPath('datasets', 'genai-hw6'),
  'breeze-v0_1',
)
writeWorkload(workloadFile, w)
console.log(`workload: ${describeWorkload(w)} -> ${workloadFile}`)

let model = values.model
if (!model) {
  model = path.join(outDir, 'mistral-small-hw6')
  if (!existsSync(path.join(model, 'config.json'))) {
    execFileSync(
      values.tool,
      [
        'make-model',
        '--out',
        model,
        '--arch',
        'mistral',
        '--hidden',
        '256',
        '--layers',
        '4',
        '--heads',
        '8',
        '--kv-heads',
        '2',
        '--ffn',
        '1024',
        '--vocab',
        '61952',
        '--shards',
        '2',
      ],
      { stdio: 'inherit' },
    )
  }
}

const args = [
  'bench-hw6',
  '--model',
  model,
  '--workload',
  workloadFile,
  '--backend',
  values.backend,
  '--new',
  values.new,
  '--json',
  path.join(outDir, 'hw6-bench.json'),
]
if (values.pairs) args.push('--pairs', values.pairs)
if (values.prompts) args.push('--prompts', values.prompts)
execFileSync(values.tool, args, { stdio: 'inherit' })
console.log(`\nwrote ${path.join(outDir, 'hw6-bench.json')}`)
