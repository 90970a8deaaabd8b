// `npm run bench:peers` (issue 16): our CPU engine beside the peers a CPU user would pick, on the same random Llama
// checkpoints (dpo-tool make-model), the same HW6 pairs and the same threads, interleaved runs, medians and ranges,
// each rate beside its floor on this machine (FLOPs / measured FMA rate, bytes / measured read bandwidth).
//   npm run bench:peers [-- --pairs 8] [--rounds 3] [--threads 2] [--models 125m,0.42b] [--python PATH]
// Peers: PyTorch + PEFT (scripts/bench/peer_peft_dpo.py --device cpu: fp32 base, LoRA r64 q/v, the same DPO loop;
// the Python of scripts/refstack/setup.sh, or --python / $DPO_PEER_PYTHON). llama.cpp (decode, prefill) needs the GGUF
// writer and node-llama-cpp, which are not in this branch yet: its rows say so. Before timing, each model is checked:
// our fp32 reference log-probs must equal PyTorch's within 1e-4 relative + 1e-3 absolute, or the bench stops.
// Prints a table and writes build/bench/peers-bench.json.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { repoRoot, sharedPath } from '../../test/helpers/sharedPath'
import { makeWorkload, writeWorkload } from './makeWorkload'
import {
  decodeBytesNf4, forwardFlops, logpsAgree, spread, trainingFlops, type ModelShape, type PairTokens, type Spread,
} from './peersMath'

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    models: { type: 'string', default: '125m,0.42b' },
    python: { type: 'string', default: process.env.DPO_PEER_PYTHON ?? '' },
    tool: { type: 'string', default: process.env.DPO_TOOL ?? path.join(repoRoot, 'build/native/dpo-tool') },
  },
})
const pairs = Number(values.pairs), rounds = Number(values.rounds), threads = values.threads
if (!existsSync(values.tool)) throw new Error(`${values.tool} is missing: run npm run build:native first`)
const outDir = path.join(repoRoot, 'build/bench')
mkdirSync(outDir, { recursive: true })
const python = values.python || execFileSync('bash', [path.join(repoRoot, 'scripts/refstack/setup.sh')], { encoding: 'utf8' })
  .trim().split('\n').pop()!

// The issue-16 shapes (random weights, bf16 safetensors; vocab 32000 holds the mistral-v0.1 workload's ids).
const shapes: Record<string, ModelShape> = {
  '125m': { hidden: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 2048, vocab: 32000 },
  '0.42b': { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 32000 },
}
function modelDir(name: string): string {
  const m = shapes[name]
  if (!m) throw new Error(`--models: unknown ${name} (one of ${Object.keys(shapes).join(', ')})`)
  const dir = path.join(outDir, `peers-llama-${name}`)
  if (!existsSync(path.join(dir, 'config.json'))) {
    execFileSync(values.tool, ['make-model', '--out', dir, '--hidden', `${m.hidden}`, '--layers', `${m.layers}`,
      '--heads', `${m.heads}`, '--kv-heads', `${m.kvHeads}`, '--ffn', `${m.ffn}`, '--vocab', `${m.vocab}`,
      '--threads', threads], { stdio: 'inherit' })
  }
  return dir
}

const workloadFile = path.join(outDir, 'hw6-workload.json')
const workload = await makeWorkload(sharedPath('tokenizers', 'mistral-v0.1'), sharedPath('datasets', 'genai-hw6'), 'breeze-v0_1')
writeWorkload(workloadFile, workload)
const used = workload.pairs.slice(0, pairs)
const pairTokens: PairTokens = {
  tokens: used.reduce((s, p) => s + p.chosen.ids.length + p.rejected.ids.length, 0) / used.length,
  scored: used.reduce((s, p) => s + [...p.chosen.labels, ...p.rejected.labels].filter((l) => l >= 0).length, 0) / used.length,
}

function readJson(file: string): Record<string, unknown> { return JSON.parse(readFileSync(file, 'utf8')) }
const num = (j: Record<string, unknown>, k: string) => Number(j[k])

function ours(model: string, quant: 'nf4' | 'none'): Record<string, unknown> {
  const json = path.join(outDir, 'peers-ours.json')
  execFileSync(values.tool, ['bench-hw6', '--backend', 'cpu', '--model', model, '--workload', workloadFile,
    '--pairs', `${pairs}`, '--prompts', '1', '--new', '2', '--quant', quant, '--threads', threads, '--json', json],
  { stdio: ['ignore', 'ignore', 'inherit'] })
  return readJson(json)
}
function peer(model: string): Record<string, unknown> {
  const json = path.join(outDir, 'peers-torch.json')
  execFileSync(python, [path.join(repoRoot, 'scripts/bench/peer_peft_dpo.py'), '--device', 'cpu', '--threads', threads,
    '--model', model, '--workload', workloadFile, '--pairs', `${pairs}`, '--generate', '0', '--json', json],
  { stdio: ['ignore', 'ignore', 'inherit'] })
  return readJson(json)
}
function decode(model: string): Record<string, unknown> {
  const json = path.join(outDir, 'peers-decode.json')
  execFileSync(values.tool, ['bench', '--backend', 'cpu', '--model', model, '--prompt-len', '64', '--new', '33',
    '--threads', threads, '--json', json], { stdio: ['ignore', 'ignore', 'inherit'] })
  return readJson(json)
}

const ceilingsFile = path.join(outDir, 'peers-ceilings.json')
execFileSync(values.tool, ['ceilings', '--mib', '512', '--reps', '3', '--json', ceilingsFile], { stdio: 'inherit' })
const ceilings = readJson(ceilingsFile)
const flopRate = num(ceilings, 'fma_GFLOPs_all_threads') * 1e9, bandwidth = num(ceilings, 'read_GBps_all_threads') * 1e9

interface Row { work: string; model: string; ours: Spread | null; peer: Spread | null; peerName: string; unit: string; floor: number | null; note: string }
const rows: Row[] = []
const checks: Record<string, unknown>[] = []
for (const name of values.models.split(',')) {
  const dir = modelDir(name), shape = shapes[name]
  // Same computation first: our fp32 reference log-probs against PyTorch's (the peer's first timed run gives them).
  const fp32 = ours(dir, 'none')
  const runs = { oursTrain: [] as number[], oursRef: [] as number[], peerTrain: [] as number[], peerRef: [] as number[], decode: [] as number[], decodeCpu: [] as number[], prefill: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    const p = peer(dir)
    if (r === 0) {
      const agree = logpsAgree(fp32.reference_logps as number[][], p.reference_logps as number[][])
      checks.push({ model: name, pairs, ...agree })
      console.log(`check ${name}: our fp32 reference log-probs vs PyTorch's, ${agree.compared} pairs, worst |diff| ${agree.worst.toExponential(2)}: ${agree.ok ? 'same' : 'DIFFERENT'}`)
      if (!agree.ok) throw new Error(`bench:peers: the engines disagree on ${name}; timing them would compare different work`)
    }
    const o = ours(dir, 'nf4')
    const d = decode(dir)
    runs.peerTrain.push(num(p, 'train_pairs_per_s'))
    runs.peerRef.push(pairs / num(p, 'reference_s'))
    runs.oursTrain.push(num(o, 'train_pairs_per_s'))
    runs.oursRef.push(pairs / num(o, 'reference_s'))
    runs.decode.push(num(d, 'decode_tokens_per_s'))
    runs.decodeCpu.push(num(d, 'decode_tokens_per_cpu_s'))
    runs.prefill.push(num(d, 'prefill_tokens_per_s'))
    console.log(`round ${r + 1}/${rounds} ${name}: train ${runs.oursTrain.at(-1)!.toFixed(3)} vs ${runs.peerTrain.at(-1)!.toFixed(3)} pairs/s, reference ${runs.oursRef.at(-1)!.toFixed(3)} vs ${runs.peerRef.at(-1)!.toFixed(3)} pairs/s, decode ${runs.decode.at(-1)!.toFixed(1)} tok/s, load ${os.loadavg()[0].toFixed(1)}`)
  }
  const noLlama = 'llama.cpp: not measured (GGUF writer and node-llama-cpp not in this branch)'
  rows.push({ work: `DPO training, LoRA r64 q/v, batch 1 x accumulation 8, ${threads} threads (ours NF4, peer fp32)`, model: name, ours: spread(runs.oursTrain), peer: spread(runs.peerTrain), peerName: 'PyTorch + PEFT', unit: 'pairs/s', floor: flopRate / trainingFlops(shape, pairTokens), note: '' })
  rows.push({ work: `reference log-probs, ${threads} threads`, model: name, ours: spread(runs.oursRef), peer: spread(runs.peerRef), peerName: 'PyTorch + PEFT', unit: 'pairs/s', floor: flopRate / forwardFlops(shape, pairTokens), note: '' })
  rows.push({ work: `greedy decode, batch 1, NF4, ${threads} threads`, model: name, ours: spread(runs.decode), peer: null, peerName: 'llama.cpp Q4_0', unit: 'tok/s', floor: bandwidth / decodeBytesNf4(shape), note: `${noLlama}; ours per CPU-second ${spread(runs.decodeCpu).median.toFixed(1)}` })
  rows.push({ work: `prefill, 64 tokens, NF4, ${threads} threads`, model: name, ours: spread(runs.prefill), peer: null, peerName: 'llama.cpp Q4_0', unit: 'tok/s', floor: flopRate / (forwardFlops(shape, { tokens: 1, scored: 0 }) + 2 * shape.vocab * shape.hidden / 64), note: noLlama })
}

const fmt = (s: Spread | null) => (s ? `${s.median.toPrecision(3)} (${s.min.toPrecision(3)}-${s.max.toPrecision(3)})` : 'not measured')
console.log(`\nmachine: ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; ceilings: read ${num(ceilings, 'read_GBps_all_threads').toFixed(1)} GB/s, FMA ${num(ceilings, 'fma_GFLOPs_all_threads').toFixed(1)} GFLOP/s (all threads); load average ${os.loadavg()[0].toFixed(1)}; ${pairs} pairs of ${pairTokens.tokens.toFixed(1)} tokens (${pairTokens.scored.toFixed(1)} scored); ${rounds} interleaved rounds, median (range)`)
console.log('| work | model | ours | peer | ours / peer | floor | ours / floor |\n|---|---|---|---|---|---|---|')
for (const r of rows) {
  const ratio = r.ours && r.peer ? (r.ours.median / r.peer.median).toFixed(2) : '-'
  const toFloor = r.ours && r.floor ? (r.ours.median / r.floor).toFixed(2) : '-'
  console.log(`| ${r.work} | ${r.model} | ${fmt(r.ours)} ${r.unit} | ${r.peerName}: ${fmt(r.peer)} | ${ratio} | ${r.floor?.toPrecision(3) ?? '-'} ${r.unit} | ${toFloor} |${r.note ? ` ${r.note}` : ''}`)
}
const out = path.join(outDir, 'peers-bench.json')
writeFileSync(out, JSON.stringify({ bench: 'peers', date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, threads: Number(threads), pairs, rounds, pairTokens, ceilings, checks, rows }, null, 1) + '\n')
console.log(`\nwrote ${out}`)
