// Checkpoint benchmark (not a test; docs/resume.md): size and time of a resume checkpoint at Breeze-7B's LoRA shape
// (32 layers, hidden 4096, KV width 1024, r 64 on q_proj and v_proj: 27.3M LoRA values) for both optimizers: encode,
// write (temp file, fsync, rename), read back and verify. Prints a table and writes build/bench/checkpoint-bench.json.
// Run: npx tsx test/bench/checkpoint-bench.ts
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { LoraTensor, OptimizerTensorState, TrainingState } from '../../src-main/addon/addonTypes'
import {
  CHECKPOINT_FILE,
  encodeCheckpoint,
  optimizerSummary,
  readCheckpoint,
  writeCheckpoint,
  type Checkpoint,
} from '../../src-main/services/training/checkpoint'
import { loraKey } from '../../src-main/services/training/adapterFiles'
import { repoRoot } from '../helpers/sharedPath'

const LAYERS = 32
const HIDDEN = 4096
const KV = 1024
const R = 64

function random(n: number): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5
  return a
}

function state(name: string, numel: number, eightBit: boolean): OptimizerTensorState {
  if (!eightBit) return { name, layout: 'adamw', step: 10, numel, m: random(numel), v: random(numel) }
  if (numel < 4096) return { name, layout: 'bnb32', step: 10, numel, m: random(numel), v: random(numel) }
  const blocks = Math.ceil(numel / 2048)
  const codes = () => Uint8Array.from({ length: numel }, () => (Math.random() * 256) | 0)
  return {
    name,
    layout: 'bnb8_blockwise',
    step: 10,
    numel,
    state1: codes(),
    state2: codes(),
    absmax1: random(blocks),
    absmax2: random(blocks),
  }
}

function breezeCheckpoint(eightBit: boolean): Checkpoint {
  const lora: LoraTensor[] = []
  for (let l = 0; l < LAYERS; l++) {
    for (const [target, out] of [
      ['q_proj', HIDDEN],
      ['v_proj', KV],
    ] as const) {
      lora.push({ name: loraKey(l, target, 'A'), shape: [R, HIDDEN], data: random(R * HIDDEN) })
      lora.push({ name: loraKey(l, target, 'B'), shape: [out, R], data: random(out * R) })
    }
  }
  const training: TrainingState = {
    optimizer: eightBit ? 'paged_adamw_8bit' : 'adamw',
    dropoutRng: '',
    tensors: lora.map((t) => state(t.name, t.data.length, eightBit)),
  }
  return {
    lora,
    training,
    state: {
      global_step: 10,
      max_steps: 100,
      optimizer: optimizerSummary(training),
      dropout_rng: '',
    } as unknown as Checkpoint['state'],
  }
}

const time = (f: () => void) => {
  const t0 = performance.now()
  f()
  return (performance.now() - t0) / 1000
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'dpo-ckpt-bench-'))
const rows = ([false, true] as const).map((eightBit) => {
  const c = breezeCheckpoint(eightBit)
  const encodeS = time(() => encodeCheckpoint(c))
  const writeS = time(() => writeCheckpoint(dir, c)) // encodes again, then temp file + fsync + rename
  const bytes = statSync(path.join(dir, CHECKPOINT_FILE)).size
  const readS = time(() => readCheckpoint(dir))
  return {
    optimizer: eightBit ? 'paged_adamw_8bit' : 'adamw',
    loraValues: c.lora.reduce((a, t) => a + t.data.length, 0),
    bytes,
    encodeS,
    writeS,
    readS,
  }
})
rmSync(dir, { recursive: true, force: true })

const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
console.log(
  `\nCPU: ${cpu}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}, temp folder ${os.tmpdir()}\n`,
)
console.log('| optimizer | LoRA values | file MB | encode s | write s (encode + fsync + rename) | read + verify s |')
console.log('|---|---|---|---|---|---|')
for (const r of rows) {
  console.log(
    `| ${r.optimizer} | ${(r.loraValues / 1e6).toFixed(1)}M | ${(r.bytes / 1e6).toFixed(0)} | ${r.encodeS.toFixed(2)} | ${r.writeS.toFixed(2)} | ${r.readS.toFixed(2)} |`,
  )
}
const outDir = path.join(repoRoot, 'build/bench')
mkdirSync(outDir, { recursive: true })
writeFileSync(
  path.join(outDir, 'checkpoint-bench.json'),
  JSON.stringify({ date: new Date().toISOString(), cpu, cores: os.cpus().length, rows }, null, 2) + '\n',
)
