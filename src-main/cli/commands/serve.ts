// `dpo-studio serve [--port N]`: the studio in a browser. Serves the built renderer and the API on 127.0.0.1 with a
// random access token (printed in the URL), and runs until Ctrl-C or SIGTERM, which first stop a run in progress
// cleanly (it records that it was cancelled); a second signal quits at once.
import { serveStudio } from '../../webhost/app'

export interface ServeFlags {
  port?: number
  root?: string[]
  /** Tests: the data folder and a renderer folder (defaults: the user's data folder, the built out/renderer). */
  dataDir?: string
  rendererDir?: string
}

export async function runServe(flags: ServeFlags): Promise<void> {
  const host = await serveStudio({
    ...(flags.port !== undefined ? { port: flags.port } : {}),
    ...(flags.root ? { roots: flags.root } : {}),
    ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
    ...(flags.rendererDir ? { rendererDir: flags.rendererDir } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  })
  process.stdout.write(`DPO Studio is running at ${host.url}\n`)
  process.stderr.write(
    'Only this machine can reach it (127.0.0.1); the token in the URL is the key. Ctrl-C stops it.\n',
  )
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (sig: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`\ndpo-studio: ${sig} again, quitting now\n`)
        process.exit(sig === 'SIGTERM' ? 143 : 130)
      }
      stopping = true
      process.stderr.write(
        '\ndpo-studio: stopping (a run in progress stops after its current step and is recorded as cancelled)\n',
      )
      void host.stop().then(() => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        resolve()
      })
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
