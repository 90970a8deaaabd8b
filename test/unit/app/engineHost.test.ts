// The engine host as a real child process (node fork, the addon on CPU): calls and streamed events, and what
// happens when it dies: calls in flight fail with the reason in words, the host restarts, and a run in progress is
// marked failed in its run_status.json while its directory keeps only whole files.
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { ApiEvent } from '../../../src-shared/api/contract'
import { JobManager } from '../../../src-main/api/jobs'
import { listRuns } from '../../../src-main/api/runStore'
import { EngineHost } from '../../../src-main/host/engineHost'
import { forkSpawner } from '../../../src-main/host/forkTransport'
import { describeExit } from '../../../src-main/host/protocol'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { sharedPath } from '../../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const hosts: EngineHost[] = []

function newHost(): { host: EngineHost; states: string[] } {
  const states: string[] = []
  const host = new EngineHost({
    spawn: forkSpawner(undefined, { ...process.env, DPO_STUDIO_TEST_HOOKS: '1' }),
    onStatus: (s) => states.push(s.state),
    restartDelayMs: 50,
  })
  host.start()
  hosts.push(host)
  return { host, states }
}
const until = async (f: () => boolean, ms = 30_000) => {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 25))
  }
}

afterAll(async () => {
  for (const h of hosts) await h.stop()
})

describe('describeExit', () => {
  it('says what a signal or exit code most likely means', () => {
    expect(describeExit(null, 'SIGKILL', '')).toMatch(/out of memory/)
    expect(describeExit(139, null, '')).toMatch(/segmentation fault/)
    expect(describeExit(3, null, 'line1\nCUDA error: illegal address\n')).toMatch(/code 3.*illegal address/)
    expect(describeExit(70, null, '')).toMatch(/GPU fault/)
  })
})

describe('EngineHost', () => {
  it('answers calls and streams events from the child process', async () => {
    const { host } = newHost()
    const info = await host.call('engineInfo', {}).promise
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/)
    expect(host.status.state).toBe('ready')
    const fractions: number[] = []
    const loaded = await host.call(
      'modelLoad',
      { dir: STORIES, quant: 'nf4', backend: 'cpu' },
      (e) => e.kind === 'loadProgress' && fractions.push(e.fraction),
    ).promise
    expect(loaded.info.config.architecture).toBe('LlamaForCausalLM')
    expect(fractions[fractions.length - 1]).toBe(1)
    const texts: string[] = []
    const gen = await host.call(
      'generate',
      {
        modelDir: STORIES,
        quant: 'nf4',
        backend: 'cpu',
        prompts: [{ id: 1, prompt: 'Once upon a time' }],
        maxNewTokens: 12,
        system: '',
      },
      (e) => e.kind === 'text' && texts.push(e.delta),
    ).promise
    expect(gen.responses).toHaveLength(1)
    expect(texts.join('').length).toBeGreaterThan(0)
    await expect(
      host.call('modelLoad', { dir: '/definitely/missing', quant: 'nf4', backend: 'cpu' }).promise,
    ).rejects.toMatchObject({ code: 'E_BAD_MODEL' })
  })

  it('reports a crash with its reason, fails the calls in flight, and restarts', async () => {
    const { host, states } = newHost()
    await host.call('engineInfo', {}).promise
    const firstPid = host.status.pid
    const err = await host.call('crashForTest', { signal: 'SIGKILL' }).promise.catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_HOST_CRASHED' })
    expect(String((err as Error).message)).toMatch(/SIGKILL.*out of memory/)
    expect(states).toContain('crashed')
    await until(() => host.status.state === 'ready')
    expect(host.status.pid).not.toBe(firstPid)
    expect(host.status.restarts).toBe(1)
    expect((await host.call('engineInfo', {}).promise).version).toBeTruthy()
  })

  it('fails the call on a GPU fault, then restarts with a fresh engine', async () => {
    const { host, states } = newHost()
    await host.call('engineInfo', {}).promise
    const firstPid = host.status.pid
    const err = await host.call('crashForTest', { signal: 'GPU_FAULT' }).promise.catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'E_DEVICE_FAULT' })
    await until(() => host.status.pid !== firstPid && host.status.state === 'ready')
    expect(states).toContain('crashed')
    expect(host.status.message).toMatch(/GPU fault/)
    expect((await host.call('engineInfo', {}).promise).version).toBeTruthy()
  })

  it('stops restarting after repeated crashes until asked', async () => {
    const states: string[] = []
    const host = new EngineHost({
      spawn: forkSpawner(undefined, { ...process.env, DPO_STUDIO_TEST_HOOKS: '1' }),
      onStatus: (s) => states.push(s.state),
      restartDelayMs: 20,
      maxCrashes: 1,
    })
    hosts.push(host)
    host.start()
    await host.call('crashForTest', { signal: 'SIGKILL' }).promise.catch(() => undefined)
    await until(() => host.status.state === 'ready')
    await host.call('crashForTest', { signal: 'SIGKILL' }).promise.catch(() => undefined)
    await until(() => host.status.state === 'failed')
    await expect(host.call('engineInfo', {}).promise).rejects.toMatchObject({ code: 'E_HOST_DOWN' })
    host.restart()
    await until(() => host.status.state === 'ready')
  })
})

describe('JobManager', () => {
  it('marks a run failed when the host dies mid-run and keeps its directory consistent', async () => {
    const { host } = newHost()
    const runsDir = mkdtempSync(path.join(tmpdir(), 'dpo-runs-'))
    const events: ApiEvent[] = []
    let killed = false
    const jobs = new JobManager(
      host,
      runsDir,
      (e) => {
        events.push(e)
        // Kill the host as the OOM killer would, once training has begun.
        if (!killed && e.type === 'job' && e.event.kind === 'phase' && e.event.phase === 'train') {
          killed = true
          process.kill(host.status.pid!, 'SIGKILL')
        }
      },
      () => 'test',
    )
    const started = jobs.startRun({
      modelDir: STORIES,
      datasetPath: HW6,
      testPromptsPath: path.join(HW6, 'test_prompt.json'),
      prompts: [],
      params: resolveTrainParams({ dataSize: 8, gradAccum: 2, maxNewTokens: 8, backend: 'cpu' }),
    })
    await until(() => events.some((e) => e.type === 'job' && e.event.kind === 'end'), 120_000)
    const end = events.find((e) => e.type === 'job' && e.event.kind === 'end')
    expect(end).toMatchObject({ event: { status: 'failed', error: { code: 'E_HOST_CRASHED' } } })
    const status = JSON.parse(readFileSync(path.join(started.outDir!, 'run_status.json'), 'utf8')) as Record<
      string,
      unknown
    >
    expect(status.status).toBe('failed')
    expect(String(status.error)).toMatch(/SIGKILL/)
    // Only whole files: every JSON file parses, and no temp file is left behind under its final name.
    for (const f of readdirSync(started.outDir!).filter((n) => n.endsWith('.json')))
      expect(() => JSON.parse(readFileSync(path.join(started.outDir!, f), 'utf8'))).not.toThrow()
    const [item] = await listRuns(runsDir)
    expect(item).toMatchObject({ status: 'failed', runId: started.runId })
    expect(existsSync(path.join(started.outDir!, 'comparison.json'))).toBe(false)
    // The next job runs on the restarted host.
    await until(() => host.status.state === 'ready')
    expect(jobs.snapshot()?.status).toBe('failed')
  })

  it('refuses a second job while one runs, and cancels', async () => {
    const { host } = newHost()
    const events: ApiEvent[] = []
    const jobs = new JobManager(
      host,
      mkdtempSync(path.join(tmpdir(), 'dpo-runs-')),
      (e) => events.push(e),
      () => null,
    )
    const params = resolveTrainParams({ maxNewTokens: 200, backend: 'cpu' })
    const prompts = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, prompt: 'Once upon a time' }))
    const job = jobs.startGenerate({ modelDir: STORIES, prompts, params })
    expect(() => jobs.startGenerate({ modelDir: STORIES, prompts, params })).toThrow(/busy/)
    await until(() => events.some((e) => e.type === 'job' && e.event.kind === 'text'))
    expect(jobs.cancel(job.jobId)).toBe(true)
    await until(() => events.some((e) => e.type === 'job' && e.event.kind === 'end'))
    const end = events.find((e) => e.type === 'job' && e.event.kind === 'end')
    expect(end).toMatchObject({ event: { status: 'cancelled' } })
  })
})
