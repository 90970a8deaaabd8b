// Adapters and run directories for the export suites: a LoRA adapter with A from the engine's seeded init and B
// random (so the adapter changes the model clearly), saved in PEFT format, and a run directory around it.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { loadAddon } from '../../src-main/addon/loadAddon'
import { LINEAR_TARGETS, resolveTrainParams, type LinearTarget } from '../../src-shared/params/trainParams'
import { saveAdapter } from '../../src-main/services/training/adapterFiles'
import { tempDir } from './modelFixtures'

/** mulberry32: the same fixtures on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface AdapterFixture {
  dir: string
  targets: LinearTarget[]
  r: number
  alpha: number
}

/** A PEFT adapter for `modelDir` over `targets`, B uniform in ±bScale. */
export async function randomAdapter(
  modelDir: string,
  opts: { targets?: LinearTarget[]; r?: number; alpha?: number; bScale?: number; seed?: number } = {},
): Promise<AdapterFixture> {
  const targets = opts.targets ?? [...LINEAR_TARGETS]
  const r = opts.r ?? 8
  const alpha = opts.alpha ?? 16
  const model = await loadAddon().loadModel(modelDir, { quant: 'none', backend: 'cpu' })
  try {
    model.attachLora({ targets, r, alpha, dropout: 0, seed: opts.seed ?? 7 })
    const rnd = seeded(opts.seed ?? 7)
    const scale = opts.bScale ?? 0.05
    const tensors = model.loraTensors().map((t) => {
      if (!t.name.endsWith('lora_B.weight')) return t
      const data = new Float32Array(t.data.length)
      for (let i = 0; i < data.length; i++) data[i] = (rnd() * 2 - 1) * scale
      return { ...t, data }
    })
    const dir = path.join(tempDir('dpo-adapter-'), 'adapter')
    saveAdapter(dir, tensors, { r, alpha, dropout: 0, targets, baseModel: modelDir })
    return { dir, targets, r, alpha }
  } finally {
    model.dispose()
  }
}

/** A run directory as the trainer leaves it (config.json naming the model and parameters, adapter/), minus metrics. */
export function fakeRunDir(modelDir: string, adapter: AdapterFixture, quant: 'nf4' | 'none'): string {
  const dir = tempDir('dpo-run-')
  const params = resolveTrainParams({ quant, loraR: adapter.r, loraAlpha: adapter.alpha, targets: adapter.targets })
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_dir: modelDir, params }, null, 2))
  mkdirSync(path.join(dir, 'adapter'))
  saveAdapterCopy(adapter.dir, path.join(dir, 'adapter'))
  return dir
}

function saveAdapterCopy(from: string, to: string): void {
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
    copyFileSync(path.join(from, f), path.join(to, f))
  }
}
