// `npm run bench:peers` (issue 16): our CPU engine beside the peers a CPU user would pick, on the same random Llama
// checkpoints (dpo-tool make-model), the same HW6 pairs and the same threads, interleaved runs, medians and ranges,
// each rate beside its floor on this machine (FLOPs / measured FMA rate, bytes / measured read bandwidth) and each
// ratio against its issue-16 target (decode >= 1.1x llama.cpp, prefill >= 1.0x, training and reference >= 2x PyTorch).
// Training and the reference pass run twice on both sides, cold (first pass over every pair shape) then warm: the
// warm rows carry the target, the cold rows stand beside them (BENCHMARKS.md, "Cold and warm passes"). Beside the
// ratio of the two medians the table gives each round's own ratio (median and range): on a shared machine whose
// speed moves between rounds, that pairing is the steadier reading of the same runs.
//   npm run bench:peers [-- --pairs 8] [--rounds 3] [--threads 2] [--decode-threads 2,1] [--models 125m,0.42b]
//                       [--peers torch,llama,trl] [--kernels avx2|avx512] [--python PATH] [--quick] [--out DIR] [--help]
//                       [--tool PATH: dpo-tool, or $DPO_TOOL; default build/native/dpo-tool]
// Peers: PyTorch + PEFT (scripts/bench/peer_peft_dpo.py --device cpu: fp32 base, LoRA r64 q/v, the same DPO loop;
// the Python of scripts/refstack/setup.sh, or --python / $DPO_PEER_PYTHON) for training and reference log-probs;
// with `trl` in --peers also TRL's DPOTrainer (scripts/bench/peer_trl_dpo.py --device cpu --quant none: the notebook's
// trainer on the same token sequences; it trains once, so its rates stand beside our cold passes);
// llama.cpp (node-llama-cpp's prebuilt CPU binary, scripts/bench/llamaPeer.ts) on GGUF files our own writer makes of
// the same checkpoint, Q4_0 against our NF4 for batch-1 decode and 64-token prefill. Before timing, each model is
// checked: our fp32 reference log-probs must equal PyTorch's within 1e-4 relative + 1e-3 absolute, and llama.cpp's
// greedy tokens on the F32 GGUF must equal ours (fp32), or the bench stops.
// --quick: a tiny model, one round, llama.cpp only (unless --peers says otherwise): a smoke test of the whole path.
// --kernels avx2: our kernel set and PyTorch's CPU code held to AVX2 on a machine with AVX-512 (scripts/bench/
// peerIsa.ts); llama.cpp's CPU variant is reported, and named when it is wider than asked.
// Prints a table and writes peers-bench.json (every run, with the load average when it ran) into --out (build/bench).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { repoRoot, sharedPath } from '../../test/helpers/sharedPath'
import { benchPrompt, ggufOf, LlamaPeer } from './llamaPeer'
import { makeWorkload, writeTokenizer, writeWorkload } from './makeWorkload'
import { llamaVariantMismatch, oursCpuKernels, oursIsaEnv, parseKernelSet, torchIsaEnv } from './peerIsa'
import {
  againstTarget,
  coldWarmRates,
  decodeBytesNf4,
  decodeBytesQ4_0,
  fastestThreadCount,
  forwardFlops,
  greedyParting,
  logpsAgree,
  roundRatios,
  spread,
  trainingFlops,
  trlRates,
  type ModelShape,
  type PairTokens,
  type Spread,
} from './peersMath'

const { values } = parseArgs({
  options: {
    pairs: { type: 'string' },
    rounds: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'decode-threads': { type: 'string' },
    models: { type: 'string' },
    peers: { type: 'string' },
    quick: { type: 'boolean', default: false },
    kernels: { type: 'string' },
    python: { type: 'string', default: process.env.DPO_PEER_PYTHON ?? '' },
    tool: { type: 'string', default: process.env.DPO_TOOL ?? path.join(repoRoot, 'build/native/dpo-tool') },
    out: { type: 'string', default: path.join(repoRoot, 'build/bench') },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  // The usage is this file's header comment.
  const header = readFileSync(new URL(import.meta.url), 'utf8').split('\n')
  console.log(
    header
      .slice(
        0,
        header.findIndex((l) => !l.startsWith('//')),
      )
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n'),
  )
  process.exit(0)
}
const quick = values.quick
const pairs = Number(values.pairs ?? (quick ? '1' : '8')),
  rounds = Number(values.rounds ?? (quick ? '1' : '3'))
const threads = values.threads
const decodeThreads = (values['decode-threads'] ?? (threads === '1' ? '1' : `${threads},1`)).split(',').map(Number)
const peers = new Set((values.peers ?? (quick ? 'llama' : 'torch,llama')).split(','))
const kernels = parseKernelSet(values.kernels)
// Every dpo-tool call (ceilings included, so that the floors are the kernel set's) and the PyTorch peer.
const oursEnv = { ...process.env, ...oursIsaEnv(kernels) },
  torchEnv = { ...process.env, ...torchIsaEnv(kernels) }
for (const p of peers)
  if (p !== 'torch' && p !== 'llama' && p !== 'trl') throw new Error(`--peers: unknown ${p} (torch, llama, trl)`)
// Training and the reference pass run on our side when a Python peer is asked for.
const pythonPeers = peers.has('torch') || peers.has('trl')
const PROMPT = 64,
  NEW = 33,
  CHECK_TOKENS = quick ? 8 : 16
if (!existsSync(values.tool)) throw new Error(`${values.tool} is missing: run npm run build:native first`)
const outDir = path.resolve(values.out)
mkdirSync(outDir, { recursive: true })
const python = !pythonPeers
  ? ''
  : values.python ||
    execFileSync('bash', [path.join(repoRoot, 'scripts/refstack/setup.sh')], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .pop()!

// The issue-16 shapes (random weights, bf16 safetensors; vocab 32000 holds the mistral-v0.1 workload's ids), and a
// tiny one for --quick.
const shapes: Record<string, ModelShape> = {
  '125m': { hidden: 768, layers: 12, heads: 12, kvHeads: 12, ffn: 2048, vocab: 32000 },
  '0.42b': { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 32000 },
  tiny: { hidden: 128, layers: 2, heads: 4, kvHeads: 2, ffn: 256, vocab: 32000 },
}
const tokenizerDir = sharedPath('tokenizers', 'mistral-v0.1')
function modelDir(name: string): string {
  const m = shapes[name]
  if (!m) throw new Error(`--models: unknown ${name} (one of ${Object.keys(shapes).join(', ')})`)
  const dir = path.join(outDir, `peers-llama-${name}`)
  if (!existsSync(path.join(dir, 'config.json'))) {
    execFileSync(
      values.tool,
      [
        'make-model',
        '--out',
        dir,
        '--hidden',
        `${m.hidden}`,
        '--layers',
        `${m.layers}`,
        '--heads',
        `${m.heads}`,
        '--kv-heads',
        `${m.kvHeads}`,
        '--ffn',
        `${m.ffn}`,
        '--vocab',
        `${m.vocab}`,
        '--threads',
        threads,
      ],
      { stdio: 'inherit' },
    )
  }
  // The GGUF writer takes the vocabulary from the model folder: the workload's tokenizer (the ids are its ids).
  if (!existsSync(path.join(dir, 'tokenizer.json'))) writeTokenizer(tokenizerDir, 'breeze-v0_1', dir)
  return dir
}

// The HW6 pairs, for the Python peers only (the llama.cpp half decodes after the bench prompt).
const workloadFile = path.join(outDir, 'hw6-workload.json')
let pairTokens: PairTokens | null = null
if (pythonPeers) {
  const workload = await makeWorkload(tokenizerDir, sharedPath('datasets', 'genai-hw6'), 'breeze-v0_1')
  writeWorkload(workloadFile, workload)
  const used = workload.pairs.slice(0, pairs)
  pairTokens = {
    tokens: used.reduce((s, p) => s + p.chosen.ids.length + p.rejected.ids.length, 0) / used.length,
    scored:
      used.reduce((s, p) => s + [...p.chosen.labels, ...p.rejected.labels].filter((l) => l >= 0).length, 0) /
      used.length,
  }
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(file, 'utf8'))
}
const num = (j: Record<string, unknown>, k: string) => Number(j[k])
const load = () => os.loadavg()[0]

function ours(model: string, quant: 'nf4' | 'none'): Record<string, unknown> {
  const json = path.join(outDir, 'peers-ours.json')
  execFileSync(
    values.tool,
    [
      'bench-hw6',
      '--backend',
      'cpu',
      '--model',
      model,
      '--workload',
      workloadFile,
      '--pairs',
      `${pairs}`,
      '--prompts',
      '1',
      '--new',
      '2',
      '--quant',
      quant,
      '--threads',
      threads,
      '--json',
      json,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: oursEnv },
  )
  return readJson(json)
}
/** Python peer `name` (peers-<name>.json) on the CPU over the workload's first `pairs` pairs, no generation. */
function pythonPeer(
  name: string,
  script: string,
  model: string,
  extra: string[],
  env: NodeJS.ProcessEnv,
): Record<string, unknown> {
  const json = path.join(outDir, `peers-${name}.json`)
  const common = ['--device', 'cpu', '--model', model, '--workload', workloadFile, '--pairs', `${pairs}`]
  execFileSync(
    python,
    [path.join(repoRoot, 'scripts/bench', script), ...common, '--generate', '0', ...extra, '--json', json],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env,
    },
  )
  return readJson(json)
}
/** PyTorch + PEFT, the hand-written DPO loop (warm and cold passes), `threads` threads. */
function torchPeer(model: string): Record<string, unknown> {
  return pythonPeer('torch', 'peer_peft_dpo.py', model, ['--threads', threads], torchEnv)
}
/** TRL's DPOTrainer, fp32 (bitsandbytes has no CPU 4-bit training path), `threads` OpenMP threads. */
function trlPeer(model: string): Record<string, unknown> {
  return pythonPeer(
    'trl',
    'peer_trl_dpo.py',
    model,
    ['--quant', 'none', '--tokenizer', tokenizerDir, '--ceilings', '0'],
    {
      ...torchEnv,
      OMP_NUM_THREADS: threads,
    },
  )
}
/** `dpo-tool bench` on the prompt of llamaPeer.benchPrompt: prefill 64 tokens, then 32 decode steps. */
function decode(model: string, t: number): Record<string, unknown> {
  const json = path.join(outDir, 'peers-decode.json')
  execFileSync(
    values.tool,
    [
      'bench',
      '--backend',
      'cpu',
      '--model',
      model,
      '--prompt-len',
      `${PROMPT}`,
      '--new',
      `${NEW}`,
      '--threads',
      `${t}`,
      '--json',
      json,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: oursEnv },
  )
  return readJson(json)
}
/** Our fp32 greedy tokens (stops after an end token). */
function oursGreedy(model: string, prompt: number[], n: number, t: number): number[] {
  const text = execFileSync(
    values.tool,
    [
      'generate',
      '--backend',
      'cpu',
      '--quant',
      'none',
      '--model',
      model,
      '--ids',
      prompt.join(','),
      '--max-new',
      `${n}`,
      '--threads',
      `${t}`,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: oursEnv },
  )
  return text.trim().split('\n').pop()!.split(',').filter(Boolean).map(Number)
}

const ceilingsFile = path.join(outDir, 'peers-ceilings.json')
execFileSync(values.tool, ['ceilings', '--mib', quick ? '64' : '512', '--reps', '3', '--json', ceilingsFile], {
  stdio: 'inherit',
  env: oursEnv,
})
const ceilings = readJson(ceilingsFile)
const oursKernels = oursCpuKernels(execFileSync(values.tool, ['info'], { encoding: 'utf8', env: oursEnv }))
const flopRate = num(ceilings, 'fma_GFLOPs_all_threads') * 1e9,
  bandwidth = num(ceilings, 'read_GBps_all_threads') * 1e9

interface Row {
  work: string
  model: string
  ours: Spread | null
  peer: Spread | null
  perRound: Spread | null // ours / peer of each round
  peerName: string
  unit: string
  target: number | null
  floor: number | null
  load: Spread
  note: string
}
const rows: Row[] = []
const checks: Record<string, unknown>[] = []
const allRuns: Record<string, Record<string, number[]>> = {}
const llama = peers.has('llama') ? await LlamaPeer.start(Math.max(...decodeThreads)) : null
if (llama) {
  console.log(`llama.cpp CPU variant: ${llama.cpuVariant ?? 'unknown'}`)
  const mismatch = llamaVariantMismatch(llama.cpuVariant, kernels, llama.binDir)
  if (mismatch) console.warn(`bench:peers: ${mismatch}`)
}
try {
  for (const name of (values.models ?? (quick ? 'tiny' : '125m,0.42b')).split(',')) {
    const dir = modelDir(name),
      shape = shapes[name]!
    const ggufDir = path.join(outDir, `peers-gguf-${name}`)
    const prompt = benchPrompt(shape.vocab, PROMPT)
    const fp32 = peers.has('torch') ? ours(dir, 'none') : null
    if (peers.has('trl') && !fp32)
      console.log(`no log-prob check for TRL on ${name}: it runs with --peers torch (the same transformers model)`)
    let q4: string | null = null
    if (llama) {
      // Same model first: llama.cpp's greedy tokens on the F32 GGUF (the checkpoint's bf16 values exactly) equal ours.
      const f32 = await ggufOf(dir, 'F32', ggufDir)
      const t = decodeThreads[0]!
      const mine = oursGreedy(dir, prompt, CHECK_TOKENS, t)
      const theirs = await llama.greedy(f32, prompt, CHECK_TOKENS, t)
      await llama.unload(f32)
      const at = greedyParting(mine, theirs, [2])
      checks.push({ model: name, peer: 'llama.cpp F32 GGUF', ours: mine, theirs, parts_at: at })
      console.log(
        `check ${name}: greedy tokens of llama.cpp (F32 GGUF) vs ours (fp32), ${mine.length} tokens: ${at < 0 ? 'same' : `DIFFERENT from position ${at}`}`,
      )
      if (at >= 0)
        throw new Error(
          `bench:peers: llama.cpp and our engine decode ${name} differently (ours ${mine.join(',')}, llama.cpp ${theirs.join(',')}); timing them would compare different work`,
        )
      q4 = await ggufOf(dir, 'Q4_0', ggufDir)
    }
    const runs: Record<string, number[]> = {}
    const push = (k: string, v: number) => (runs[k] ??= []).push(v)
    for (let r = 0; r < rounds; r++) {
      const said: string[] = []
      if (pythonPeers) {
        push('load_train', load())
        const f = (v: number) => v.toFixed(3)
        const o = coldWarmRates(ours(dir, 'nf4'), pairs, 'dpo-tool bench-hw6')
        push('ours_train', o.train)
        push('ours_train_cold', o.trainCold)
        push('ours_ref', o.reference)
        push('ours_ref_cold', o.referenceCold)
        if (fp32) {
          const p = torchPeer(dir)
          if (r === 0) {
            const agree = logpsAgree(fp32.reference_logps as number[][], p.reference_logps as number[][])
            checks.push({ model: name, peer: 'PyTorch + PEFT', pairs, ...agree })
            console.log(
              `check ${name}: our fp32 reference log-probs vs PyTorch's, ${agree.compared} pairs, worst |diff| ${agree.worst.toExponential(2)}: ${agree.ok ? 'same' : 'DIFFERENT'}`,
            )
            if (!agree.ok)
              throw new Error(`bench:peers: the engines disagree on ${name}; timing them would compare different work`)
          }
          const q = coldWarmRates(p, pairs, 'peer_peft_dpo.py')
          push('peer_train', q.train)
          push('peer_train_cold', q.trainCold)
          push('peer_ref', q.reference)
          push('peer_ref_cold', q.referenceCold)
          said.push(
            `train warm ${f(o.train)} vs ${f(q.train)} pairs/s (cold ${f(o.trainCold)} vs ${f(q.trainCold)}), reference warm ${f(o.reference)} vs ${f(q.reference)} pairs/s (cold ${f(o.referenceCold)} vs ${f(q.referenceCold)})`,
          )
        }
        if (peers.has('trl')) {
          const t = trlRates(trlPeer(dir), pairs)
          push('trl_train', t.train)
          push('trl_ref', t.reference)
          said.push(
            `TRL: train ${f(o.trainCold)} (ours cold) vs ${f(t.train)} pairs/s, reference ${f(o.referenceCold)} vs ${f(t.reference)}`,
          )
        }
      }
      for (const t of decodeThreads) {
        push(`load_decode_${t}`, load())
        const d = decode(dir, t)
        push(`ours_decode_${t}`, num(d, 'decode_tokens_per_s'))
        push(`ours_decode_cpu_${t}`, num(d, 'decode_tokens_per_cpu_s'))
        push(`ours_prefill_${t}`, num(d, 'prefill_tokens_per_s'))
        if (llama && q4) {
          const l = await llama.time(q4, prompt, NEW, t)
          push(`peer_decode_${t}`, l.decode_tokens_per_s)
          push(`peer_decode_cpu_${t}`, l.decode_tokens_per_cpu_s)
          push(`peer_prefill_${t}`, l.prefill_tokens_per_s)
        }
        const last = (k: string) => runs[k]!.at(-1)!.toFixed(1)
        said.push(
          `${t} thr: decode ${last(`ours_decode_${t}`)}${llama ? ` vs ${last(`peer_decode_${t}`)}` : ''} tok/s (per CPU-s ${last(`ours_decode_cpu_${t}`)}${llama ? ` vs ${last(`peer_decode_cpu_${t}`)}` : ''}), prefill ${runs[`ours_prefill_${t}`]!.at(-1)!.toFixed(0)}${llama ? ` vs ${runs[`peer_prefill_${t}`]!.at(-1)!.toFixed(0)}` : ''} tok/s`,
        )
      }
      console.log(`round ${r + 1}/${rounds} ${name}: ${said.join('; ')}; load ${load().toFixed(1)}`)
    }
    allRuns[name] = runs
    const s = (k: string) => (runs[k] ? spread(runs[k]!) : null)
    // Each round's ratio of two series: ours / the peer's.
    const roundsOf = (oursKey: string, peerKey: string) =>
      runs[oursKey] && runs[peerKey] ? spread(roundRatios(runs[oursKey]!, runs[peerKey]!)) : null
    const perRound = (k: string) => roundsOf(`ours_${k}`, `peer_${k}`)
    if (peers.has('trl'))
      // TRL's one run beside our cold passes (`trl_*` series against `ours_*_cold`).
      for (const ph of [
        {
          key: 'trl_train',
          ours: 'ours_train_cold',
          work: `DPO training, ${threads} threads, TRL DPOTrainer (one run; ours cold)`,
          f: trainingFlops,
        },
        {
          key: 'trl_ref',
          ours: 'ours_ref_cold',
          work: `reference log-probs, ${threads} threads, TRL precompute (ours cold)`,
          f: forwardFlops,
        },
      ])
        rows.push({
          work: ph.work,
          model: name,
          ours: s(ph.ours),
          peer: s(ph.key),
          perRound: roundsOf(ph.ours, ph.key),
          peerName: 'TRL + PEFT',
          unit: 'pairs/s',
          target: 2,
          floor: flopRate / ph.f(shape, pairTokens!),
          load: s('load_train')!,
          note: '',
        })
    if (fp32) {
      // Warm rows carry the issue-16 target; the cold rows beside them (first pass over every pair shape) do not
      // (BENCHMARKS.md, "Cold and warm passes").
      const phases = [
        {
          key: 'train',
          work: `DPO training, LoRA r64 q/v, batch 1 x accumulation 8, ${threads} threads (ours NF4, peer fp32)`,
          floor: flopRate / trainingFlops(shape, pairTokens!),
        },
        {
          key: 'ref',
          work: `reference log-probs, ${threads} threads`,
          floor: flopRate / forwardFlops(shape, pairTokens!),
        },
      ]
      for (const ph of phases) {
        for (const cold of [false, true]) {
          const k = cold ? `${ph.key}_cold` : ph.key
          rows.push({
            work: cold ? `same, cold (first ${ph.key === 'train' ? 'loop, lr 0' : 'pass'})` : `${ph.work}, warm`,
            model: name,
            ours: s(`ours_${k}`),
            peer: s(`peer_${k}`),
            perRound: perRound(k),
            peerName: 'PyTorch + PEFT',
            unit: 'pairs/s',
            target: cold ? null : 2,
            floor: ph.floor,
            load: s('load_train')!,
            note: '',
          })
        }
      }
    }
    for (const t of decodeThreads) {
      const peerFloor = (bandwidth / decodeBytesQ4_0(shape)).toPrecision(3)
      rows.push({
        work: `greedy decode, batch 1, ${t} thread${t > 1 ? 's' : ''} (ours NF4, peer Q4_0)`,
        model: name,
        ours: s(`ours_decode_${t}`),
        peer: s(`peer_decode_${t}`),
        perRound: perRound(`decode_${t}`),
        peerName: 'llama.cpp Q4_0',
        unit: 'tok/s',
        target: 1.1,
        floor: bandwidth / decodeBytesNf4(shape),
        load: s(`load_decode_${t}`)!,
        note: `per CPU-second: ours ${s(`ours_decode_cpu_${t}`)!.median.toFixed(1)}${llama ? `, peer ${s(`peer_decode_cpu_${t}`)!.median.toFixed(1)}; peer's byte floor ${peerFloor}` : ''}`,
      })
    }
    if (llama && decodeThreads.length > 1) {
      // Each engine at its own fastest thread count: no target (the rows above compare the same threads, as the
      // issue asks), but what a user who picks the better setting for each would see.
      const fastest = (side: 'ours' | 'peer') =>
        fastestThreadCount(new Map(decodeThreads.map((t) => [t, runs[`${side}_decode_${t}`]!])))
      const to = fastest('ours'),
        tp = fastest('peer')
      rows.push({
        work: `greedy decode, batch 1, each engine at its fastest thread count (ours ${to}, peer ${tp})`,
        model: name,
        ours: s(`ours_decode_${to}`),
        peer: s(`peer_decode_${tp}`),
        perRound: roundsOf(`ours_decode_${to}`, `peer_decode_${tp}`),
        peerName: 'llama.cpp Q4_0',
        unit: 'tok/s',
        target: null,
        floor: bandwidth / decodeBytesNf4(shape),
        load: s(`load_decode_${to}`)!,
        note: '',
      })
    }
    const t = decodeThreads[0]!
    rows.push({
      work: `prefill, ${PROMPT} tokens, ${t} thread${t > 1 ? 's' : ''} (ours NF4, peer Q4_0)`,
      model: name,
      ours: s(`ours_prefill_${t}`),
      peer: s(`peer_prefill_${t}`),
      perRound: perRound(`prefill_${t}`),
      peerName: 'llama.cpp Q4_0',
      unit: 'tok/s',
      target: 1.0,
      floor: flopRate / (forwardFlops(shape, { tokens: 1, scored: 0 }) + (2 * shape.vocab * shape.hidden) / PROMPT),
      load: s(`load_decode_${t}`)!,
      note: '',
    })
  }
} finally {
  await llama?.dispose()
}

const fmt = (s: Spread | null) =>
  s ? `${s.median.toPrecision(3)} (${s.min.toPrecision(3)}-${s.max.toPrecision(3)})` : 'not measured'
console.log(
  `\nmachine: ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; ceilings: read ${num(ceilings, 'read_GBps_all_threads').toFixed(1)} GB/s, FMA ${num(ceilings, 'fma_GFLOPs_all_threads').toFixed(1)} GFLOP/s (all threads); load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(
      ' ',
    )}; kernels: ${kernels ? `${kernels} (ours and PyTorch)` : 'each engine its widest'}${oursKernels ? ` (ours: ${oursKernels})` : ''}${llama ? `, llama.cpp variant ${llama.cpuVariant ?? 'unknown'}` : ''}${pairTokens ? `; ${pairs} pairs of ${pairTokens.tokens.toFixed(1)} tokens (${pairTokens.scored.toFixed(1)} scored)` : ''}; ${rounds} interleaved rounds, median (range)`,
)
console.log(
  '| work | model | ours | peer | ours / peer vs target | per-round ours / peer | floor | ours / floor | load (1 min) |\n|---|---|---|---|---|---|---|---|---|',
)
for (const r of rows) {
  const ratio = r.ours && r.peer ? r.ours.median / r.peer.median : null
  const toFloor = r.ours && r.floor ? (r.ours.median / r.floor).toFixed(2) : '-'
  console.log(
    `| ${r.work} | ${r.model} | ${fmt(r.ours)} ${r.unit} | ${r.peerName}: ${fmt(r.peer)} | ${againstTarget(ratio, r.target)} | ${r.perRound ? fmt(r.perRound) : '-'} | ${r.floor?.toPrecision(3) ?? '-'} ${r.unit} | ${toFloor} | ${r.load.min.toFixed(1)}-${r.load.max.toFixed(1)} |${r.note ? ` ${r.note}` : ''}`,
  )
}
const out = path.join(outDir, 'peers-bench.json')
writeFileSync(
  out,
  JSON.stringify(
    {
      bench: 'peers',
      date: new Date().toISOString(),
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      threads: Number(threads),
      decodeThreads,
      peers: [...peers],
      kernels: kernels ?? 'widest',
      oursCpuKernels: oursKernels,
      llamaCpuVariant: llama?.cpuVariant ?? null,
      pairs,
      rounds,
      pairTokens,
      ceilings,
      checks,
      rows,
      runs: allRuns,
    },
    null,
    1,
  ) + '\n',
)
console.log(`\nwrote ${out}`)
