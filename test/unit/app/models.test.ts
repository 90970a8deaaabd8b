// Model discovery: the local Hugging Face cache layout (models--org--name/snapshots/rev, refs/main, blobs via
// symlinks) and what a model folder holds, read from config.json and safetensors headers without loading weights.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { hfHubCacheDir, listCachedModels } from '../../../src-main/services/models/hfCache'
import { inspectModel, nf4BytesFor } from '../../../src-main/services/models/inspectModel'
import { sharedPath } from '../../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')

describe('hfHubCacheDir', () => {
  it('follows HF_HUB_CACHE, then HF_HOME, then XDG_CACHE_HOME', () => {
    expect(hfHubCacheDir({ HF_HUB_CACHE: '/a' })).toBe('/a')
    expect(hfHubCacheDir({ HF_HOME: '/h' })).toBe('/h/hub')
    expect(hfHubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub')
  })
})

describe('listCachedModels', () => {
  it('finds snapshots with a config.json, preferring refs/main, following blob symlinks for sizes', async () => {
    const hub = mkdtempSync(path.join(tmpdir(), 'dpo-hub-'))
    const repo = path.join(hub, 'models--tiny--stories260K')
    mkdirSync(path.join(repo, 'blobs'), { recursive: true })
    mkdirSync(path.join(repo, 'refs'), { recursive: true })
    for (const rev of ['aaa111', 'bbb222']) mkdirSync(path.join(repo, 'snapshots', rev), { recursive: true })
    writeFileSync(path.join(repo, 'refs', 'main'), 'bbb222\n')
    for (const f of ['config.json', 'model.safetensors']) {
      copyFileSync(path.join(STORIES, f), path.join(repo, 'blobs', f + '.blob'))
      symlinkSync(path.join('..', '..', 'blobs', f + '.blob'), path.join(repo, 'snapshots', 'bbb222', f))
    }
    mkdirSync(path.join(hub, 'datasets--x--y'), { recursive: true })
    mkdirSync(path.join(hub, 'models--no--config', 'snapshots', 'r1'), { recursive: true })
    const models = await listCachedModels(hub)
    expect(models).toHaveLength(1)
    expect(models[0]).toMatchObject({
      repoId: 'tiny/stories260K',
      revision: 'bbb222',
      architecture: 'LlamaForCausalLM',
    })
    expect(models[0]!.sizeBytes).toBeGreaterThan(1_000_000)
    expect(await listCachedModels(path.join(hub, 'missing'))).toEqual([])
  })
})

describe('inspectModel', () => {
  it('reads architecture, parameters and sizes of stories260K', async () => {
    const m = await inspectModel(STORIES)
    expect(m).toMatchObject({
      architecture: 'LlamaForCausalLM',
      supported: true,
      layers: 5,
      hidden: 64,
      vocab: 512,
      params: 260032,
      hasTokenizer: true,
    })
    expect(m.checkpointBytes).toBeGreaterThan(1_000_000)
    // Linears shrink to ~4.6 bits per weight; the rest stays 16-bit: far below the fp32 checkpoint.
    expect(m.nf4Bytes).toBeLessThan(m.checkpointBytes / 4)
    expect(nf4BytesFor(64 * 64)).toBeCloseTo(64 * 64 * (0.5 + 1 / 64 + 4 / (64 * 256)))
  })

  it('names what is missing', async () => {
    await expect(inspectModel('/definitely/missing')).rejects.toThrow(/does not exist/)
    const dir = mkdtempSync(path.join(tmpdir(), 'dpo-model-'))
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }),
    )
    const m = await inspectModel(dir)
    expect(m.supported).toBe(false)
    expect(m.note).toMatch(/safetensors/)
  })
})
