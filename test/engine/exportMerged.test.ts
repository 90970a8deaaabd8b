// Merged model export (docs/exports.md): the merged folder's log-probs equal base + adapter in fp32 (1e-4), its bf16
// weights are the correctly rounded merge, an NF4 run merges into the 4-bit round trip it trained with, and the export
// never writes over a folder that is not an earlier merged export.
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import type { NativeModel, QuantMode } from '../../src-main/addon/addonTypes'
import { EXPORT_MARKER } from '../../src-main/services/export/exportFolder'
import { HfCheckpoint } from '../../src-main/services/export/hfCheckpoint'
import { exportMergedModel } from '../../src-main/services/export/mergedModel'
import { loadAdapter, saveAdapter } from '../../src-main/services/training/adapterFiles'
import { attachLoadedAdapter } from '../../src-main/services/training/loraAttach'
import { fakeRunDir, randomAdapter, seeded, type AdapterFixture } from '../helpers/exportFixtures'
import { tempDir } from '../helpers/modelFixtures'
import { runCli } from '../helpers/runCli'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')

/** Sequences of random ids after BOS, every position labelled: the sum of its log-probs and the mean logit. */
function sequences(count: number, length: number, seed: number) {
  const rnd = seeded(seed)
  return Array.from({ length: count }, () => {
    const ids = [1, ...Array.from({ length: length - 1 }, () => 3 + Math.floor(rnd() * 509))]
    return { ids, labels: ids.map((id, i) => (i === 0 ? -100 : id)) }
  })
}
const SEQS = sequences(6, 24, 11)

async function score(dir: string, quant: QuantMode, adapterDir?: string): Promise<number[]> {
  const model: NativeModel = await loadAddon().loadModel(dir, { quant, backend: 'cpu' })
  try {
    if (adapterDir) attachLoadedAdapter({ native: model, info: model.info(), dir } as never, loadAdapter(adapterDir))
    const r = await model.logps(SEQS, 0)
    return r.flatMap((x) => [x.logp, x.logitsMean])
  } finally {
    model.dispose()
  }
}

/** Largest |a - b| / max(1, |b|). */
function scaledDiff(a: number[], b: number[]): number {
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!) / Math.max(1, Math.abs(b[i]!))))
}

let adapter: AdapterFixture
let withAdapter: number[]
let bare: number[]

beforeAll(async () => {
  adapter = await randomAdapter(STORIES)
  withAdapter = await score(STORIES, 'none', adapter.dir)
  bare = await score(STORIES, 'none')
})

describe('merged model export', () => {
  it('fp32: the merged folder scores as base + adapter within 1e-4, and holds a complete Hugging Face model', async () => {
    const out = path.join(tempDir('dpo-merged-'), 'merged')
    const r = await exportMergedModel({
      modelDir: STORIES,
      adapterDir: adapter.dir,
      mergeBase: 'original',
      outDir: out,
    })
    expect(r.dtype).toBe('F32')
    expect(r.mergedTensors).toBe(5 * 7) // every linear of the 5 layers
    expect(readdirSync(out).sort()).toEqual(
      [
        'README.md',
        'config.json',
        EXPORT_MARKER,
        'generation_config.json',
        'model.safetensors',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    )
    const merged = await score(out, 'none')
    const d = scaledDiff(merged, withAdapter)
    console.log(
      `merged fp32 vs base + adapter: ${d.toExponential(2)} (adapter effect ${scaledDiff(bare, withAdapter).toExponential(2)})`,
    )
    expect(d).toBeLessThan(1e-4)
    expect(scaledDiff(bare, withAdapter)).toBeGreaterThan(1e-2) // the adapter matters, so the check can fail
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({
      torch_dtype: 'float32',
      model_type: 'llama',
    })
  })

  it('bf16: every merged weight is the correctly rounded W + (alpha/r) B A, and scores within bf16 rounding', async () => {
    const root = tempDir('dpo-merged-')
    const out = path.join(root, 'merged-bf16')
    await exportMergedModel({
      modelDir: STORIES,
      adapterDir: adapter.dir,
      mergeBase: 'original',
      dtype: 'BF16',
      outDir: out,
    })
    // Independent reference for one adapted matrix: W + s * B A in double, rounded to bf16 by hand.
    const base = HfCheckpoint.open(STORIES)
    const got = HfCheckpoint.open(out)
    const name = 'model.layers.2.self_attn.k_proj.weight'
    const w = base.readFloat32(name)
    const [rows, cols] = base.get(name).shape as [number, number]
    const a = loadAdapter(adapter.dir).tensors.find((t) =>
      t.name.endsWith('layers.2.self_attn.k_proj.lora_A.weight'),
    )!.data
    const b = loadAdapter(adapter.dir).tensors.find((t) =>
      t.name.endsWith('layers.2.self_attn.k_proj.lora_B.weight'),
    )!.data
    const s = adapter.alpha / adapter.r
    const stored = got.readFloat32(name)
    expect(got.get(name).dtype).toBe('BF16')
    let mismatches = 0
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let acc = 0
        for (let k = 0; k < adapter.r; k++) acc += b[i * adapter.r + k]! * a[k * cols + j]!
        if (stored[i * cols + j] !== bf16(Math.fround(w[i * cols + j]! + s * acc))) mismatches++
      }
    }
    base.close()
    got.close()
    expect(mismatches).toBe(0)
    // Scores: against the base rounded to bf16 with the adapter applied, the only difference is where W + s B A rounds.
    const baseBf16 = path.join(root, 'base-bf16')
    await exportMergedModel({
      modelDir: STORIES,
      adapterDir: null,
      mergeBase: 'original',
      dtype: 'BF16',
      outDir: baseBf16,
    })
    const d = scaledDiff(await score(out, 'none'), await score(baseBf16, 'none', adapter.dir))
    console.log(`merged bf16 vs bf16 base + adapter: ${d.toExponential(2)}`)
    expect(d).toBeLessThan(5e-3)
  })

  it('NF4 run: merged into the 4-bit round trip it trained with, it scores as the 4-bit base + adapter (bf16 inputs aside)', async () => {
    const run = fakeRunDir(STORIES, adapter, 'nf4')
    const out = path.join(tempDir('dpo-merged-'), 'merged-nf4')
    const r = runCli(['export-merged', run, '--out', out])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(readFileSync(path.join(out, EXPORT_MARKER), 'utf8'))).toMatchObject({
      kind: 'merged-model',
      merge_base: 'nf4',
      run,
    })
    const nf4WithAdapter = await score(STORIES, 'nf4', adapter.dir)
    const merged = await score(out, 'none')
    const d = scaledDiff(merged, nf4WithAdapter)
    // The 4-bit path also rounds each linear's input to bf16 (2^-9 relative); the merged fp32 model does not.
    const original = path.join(tempDir('dpo-merged-'), 'merged-original')
    expect(runCli(['export-merged', run, '--merge-into', 'original', '--out', original]).code).toBe(0)
    const dOriginal = scaledDiff(await score(original, 'none'), nf4WithAdapter)
    console.log(
      `merged (nf4 base) vs 4-bit base + adapter: ${d.toExponential(2)}; merged into the original weights: ${dOriginal.toExponential(2)}`,
    )
    expect(d).toBeLessThan(5e-3)
    expect(d * 10).toBeLessThan(dOriginal)
  })

  it('never writes into a folder that is not an earlier merged export; replaces one only when told to', async () => {
    const root = tempDir('dpo-merged-')
    writeFileSync(path.join(root, 'keep.txt'), 'x')
    const req = { modelDir: STORIES, adapterDir: adapter.dir, mergeBase: 'original' as const }
    await expect(exportMergedModel({ ...req, outDir: root })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      message: expect.stringMatching(/not an earlier merged-model export/),
    })
    await expect(exportMergedModel({ ...req, outDir: path.join(root, 'keep.txt') })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
    })
    expect(readdirSync(root)).toEqual(['keep.txt'])
    const mine = path.join(root, 'merged')
    await exportMergedModel({ ...req, outDir: mine })
    await expect(exportMergedModel({ ...req, outDir: mine })).rejects.toMatchObject({ code: 'E_EXPORT_EXISTS' })
    // A GGUF export's folder is ours too, but of another kind: not replaced by a merged model.
    const marker = JSON.parse(readFileSync(path.join(mine, EXPORT_MARKER), 'utf8')) as { files: string[] }
    expect(marker.files).toEqual([
      'README.md',
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ])
    writeFileSync(path.join(mine, EXPORT_MARKER), JSON.stringify({ ...marker, kind: 'gguf' }))
    await expect(exportMergedModel({ ...req, outDir: mine, overwrite: true })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
    })
    writeFileSync(path.join(mine, EXPORT_MARKER), JSON.stringify({ ...marker, kind: 'merged-model' }))
    // A file put into the earlier export is not ours: replacing the folder would delete it, so that is refused.
    writeFileSync(path.join(mine, 'notes.txt'), 'mine')
    await expect(exportMergedModel({ ...req, outDir: mine, overwrite: true })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      message: expect.stringMatching(/also holds what it did not write \(notes\.txt\)/),
    })
    expect(readFileSync(path.join(mine, 'notes.txt'), 'utf8')).toBe('mine')
    rmSync(path.join(mine, 'notes.txt'))
    await exportMergedModel({ ...req, outDir: mine, overwrite: true })
    expect(readdirSync(root).filter((f) => f.startsWith('.'))).toEqual([]) // no temp folders left behind
    expect(existsSync(path.join(mine, 'model.safetensors'))).toBe(true)
  })

  it('never writes into the model folder or over the adapter it reads, also through a link', async () => {
    const model = path.join(tempDir('dpo-model-'), 'stories260K')
    cpSync(STORIES, model, { recursive: true })
    const before = readdirSync(model).sort()
    const req = { modelDir: model, adapterDir: adapter.dir, mergeBase: 'original' as const }
    await expect(exportMergedModel({ ...req, outDir: path.join(model, 'merged') })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      message: expect.stringMatching(/is inside .*stories260K, which this export reads/),
    })
    const link = path.join(tempDir('dpo-link-'), 'model-link')
    symlinkSync(model, link)
    await expect(exportMergedModel({ ...req, outDir: path.join(link, 'merged') })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
    })
    await expect(exportMergedModel({ ...req, outDir: path.dirname(adapter.dir) })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      message: expect.stringMatching(/holds .*adapter, which this export reads/),
    })
    expect(readdirSync(model).sort()).toEqual(before)
    expect(readdirSync(path.dirname(adapter.dir))).toEqual(['adapter'])
  })

  it('a failure half-way leaves an earlier export byte for byte and no temp folder', async () => {
    const root = tempDir('dpo-merged-')
    const mine = path.join(root, 'merged')
    const req = { modelDir: STORIES, adapterDir: adapter.dir, mergeBase: 'original' as const, outDir: mine }
    await exportMergedModel(req)
    const before = readFileSync(path.join(mine, 'model.safetensors'))
    // Stopped after a few tensors (a full disk, Ctrl-C): the replacement was being written beside it.
    let seen = 0
    const failing = exportMergedModel({
      ...req,
      dtype: 'BF16',
      overwrite: true,
      onProgress: () => {
        if (++seen === 5) throw new Error('disk full')
      },
    })
    await expect(failing).rejects.toMatchObject({ code: 'E_IO', message: expect.stringMatching(/disk full/) })
    expect(readFileSync(path.join(mine, 'model.safetensors')).equals(before)).toBe(true)
    expect(readdirSync(root)).toEqual(['merged'])
  })

  it('refuses an adapter of another model, naming the tensor, before writing anything', async () => {
    // The adapter of a model whose hidden size is one less: every A has one column too few for stories260K.
    const lora = loadAdapter(adapter.dir)
    const narrowed = lora.tensors.map((t) => {
      if (!t.name.includes('lora_A')) return t
      const [r, cols] = t.shape as [number, number]
      const data = new Float32Array(r * (cols - 1))
      for (let i = 0; i < r; i++) data.set(t.data.subarray(i * cols, i * cols + cols - 1), i * (cols - 1))
      return { ...t, shape: [r, cols - 1], data }
    })
    const dir = path.join(tempDir('dpo-adapter-'), 'adapter')
    saveAdapter(dir, narrowed, lora.settings)
    const out = path.join(tempDir('dpo-merged-'), 'merged')
    await expect(
      exportMergedModel({ modelDir: STORIES, adapterDir: dir, mergeBase: 'original', outDir: out }),
    ).rejects.toMatchObject({
      code: 'E_BAD_INPUT',
      message: expect.stringMatching(
        /matrices for model\.layers\.0\.mlp\.down_proj\.weight do not fit its shape \[64,172\]/,
      ),
    })
    expect(existsSync(out)).toBe(false)
  })
})

/** fp32 -> bf16 -> fp32, round to nearest even (an independent copy of the rule, for the check above). */
function bf16(x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)
  const lsb = (u[0]! >>> 16) & 1
  u[0] = ((u[0]! + 0x7fff + lsb) >>> 16) << 16
  return f[0]!
}
