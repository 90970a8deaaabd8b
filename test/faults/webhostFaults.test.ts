// The web host as a user runs it (`serve` child process, real engine, demo model) under faults: protocol errors from
// a client holding the token close only that connection (the host and a run in progress live on), Ctrl-C on serve
// stops a run cleanly and records it, and a run whose host was killed is marked failed when a host starts again
// (issue 10 items 5 and 6; docs/run-directory.md).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { RUN_LOCK_FILE, writerIsGone } from '../../src-main/services/training/runDir'
import { tempDir } from '../helpers/modelFixtures'
import { ApiClient, sendRawFrame, startServe, type RawFrame } from '../helpers/webClient'

/** The demo run with enough steps (28) to still be training while the test acts. */
async function startDemoRun(
  api: ApiClient,
  params: Record<string, unknown> = {},
): Promise<{ runId: string; outDir: string }> {
  const demo = (await api.call('appInfo')).demo
  return api.call('runStart', {
    modelDir: demo.modelDir,
    datasetPath: demo.datasetDir,
    testPromptsPath: demo.testPromptsPath,
    params: { dataSize: 60, epochs: 4, learningRate: 2e-3, maxNewTokens: 16, ...params },
  })
}
const status = (outDir: string) => JSON.parse(readFileSync(path.join(outDir, 'run_status.json'), 'utf8'))

describe('web host: WebSocket protocol errors', () => {
  it('each bad frame closes only its connection with the right code; the host and its training run carry on', async () => {
    const serve = await startServe(tempDir('dpo-serve-'))
    const api = await ApiClient.open(serve.port, serve.token)
    try {
      const run = await startDemoRun(api)
      await api.waitForJob((e) => e.kind === 'metrics')
      const bad: Record<string, RawFrame> = {
        oversize: { opcode: 0x2, claimedLength: 5 * 2 ** 20 },
        invalidUtf8: { opcode: 0x1, payload: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) },
        unmasked: { opcode: 0x1, payload: Buffer.from('{"id":1}'), masked: false },
        reservedOpcode: { opcode: 0x3, payload: Buffer.from('x') },
        rsvBits: { opcode: 0x1, payload: Buffer.from('{}'), rsv: 0b110 },
      }
      const codes: Record<string, number | null> = {}
      for (const [name, frame] of Object.entries(bad)) codes[name] = await sendRawFrame(serve.port, serve.token, frame)
      // RFC 6455: 1009 message too big, 1007 invalid payload data, 1002 protocol error.
      expect(codes).toEqual({ oversize: 1009, invalidUtf8: 1007, unmasked: 1002, reservedOpcode: 1002, rsvBits: 1002 })

      expect((await api.call('appInfo')).platform).toBe('web')
      const end = await api.waitForJob((e) => e.kind === 'end')
      expect(end.status).toBe('completed')
      expect(status(run.outDir)).toMatchObject({ status: 'completed', phase: 'done' })
      expect(serve.stderr()).not.toMatch(/Unhandled 'error' event/)
    } finally {
      api.close()
      serve.child.kill('SIGTERM')
      await serve.exited
    }
  })
})

describe('web host: runs outlive their host in the record', () => {
  it('Ctrl-C on serve stops the run in progress cleanly and records it as cancelled', async () => {
    const serve = await startServe(tempDir('dpo-serve-'))
    const api = await ApiClient.open(serve.port, serve.token)
    const run = await startDemoRun(api)
    await api.waitForJob((e) => e.kind === 'metrics' && e.row.step >= 2)
    serve.child.kill('SIGINT')
    expect(await serve.exited).toBe(0)
    const s = status(run.outDir)
    expect(s).toMatchObject({ status: 'cancelled', cancelledIn: 'train', reason: 'cancelled during training' })
    expect(JSON.parse(readFileSync(path.join(run.outDir, 'train_summary.json'), 'utf8')).status).toBe('cancelled')
  })

  it('a run whose host was killed is marked failed, with the reason, when a host starts again', async () => {
    const data = tempDir('dpo-serve-')
    const first = await startServe(data)
    const api = await ApiClient.open(first.port, first.token)
    const run = await startDemoRun(api)
    await api.waitForJob((e) => e.kind === 'metrics')
    first.child.kill('SIGKILL')
    await first.exited
    // The engine host notices its parent is gone and exits; until a host starts, the record still says running.
    await new Promise((r) => setTimeout(r, 1000))
    expect(status(run.outDir).status).toBe('running')
    // The run's writer is gone (its pid ended, its lock released) only once the engine host has noticed the dead
    // parent and exited, which takes seconds on a loaded machine: wait for exactly the condition the start-up check
    // uses (30 s at most) rather than racing it.
    const writerGone = () => writerIsGone(status(run.outDir), path.join(run.outDir, RUN_LOCK_FILE))
    for (let i = 0; i < 300 && !writerGone(); i++) await new Promise((r) => setTimeout(r, 100))
    expect(writerGone()).toBe(true)

    const second = await startServe(data)
    try {
      // On start, before anyone lists the history.
      for (let i = 0; i < 50 && status(run.outDir).status === 'running'; i++)
        await new Promise((r) => setTimeout(r, 100))
      const s = status(run.outDir)
      expect(s.status).toBe('failed')
      const api2 = await ApiClient.open(second.port, second.token)
      const listed = (await api2.call('runsList')).find((r: { runId: string }) => r.runId === run.runId)
      api2.close()
      expect(s.error).toMatch(/^stopped during training: the process that ran it \(pid \d+\) is gone/)
      expect(listed).toMatchObject({ status: 'failed', error: s.error })
    } finally {
      second.child.kill('SIGTERM')
      await second.exited
    }
  })
})
