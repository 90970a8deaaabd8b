// `dpo-studio serve --allow DIR` (repeatable): the folders a browser may open besides the defaults reach the web host
// as extra roots (issue 12 item 4; the refusal message names this flag, test/unit/app/pathPolicy.test.ts).
import { describe, expect, it, vi } from 'vitest'

const runServe = vi.fn(async () => undefined)
vi.mock('../../../src-main/cli/commands/serve', () => ({ runServe }))

describe('serve --allow', () => {
  it('collects every --allow into the extra roots, none when absent', async () => {
    const { buildProgram } = await import('../../../src-main/cli/main')
    await buildProgram().parseAsync(['serve', '--allow', '/data/hw6', '--allow', '/mnt/models', '--port', '0'], {
      from: 'user',
    })
    expect(runServe).toHaveBeenLastCalledWith({ port: 0, root: ['/data/hw6', '/mnt/models'] })
    await buildProgram().parseAsync(['serve'], { from: 'user' })
    expect(runServe).toHaveBeenLastCalledWith({ root: [] })
  })
})
