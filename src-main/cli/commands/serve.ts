// `dpo-studio serve [--port N]`: the studio in a browser. Serves the built renderer and the API on 127.0.0.1 with a
// random access token (printed in the URL), and runs until Ctrl-C.
import { serveStudio } from '../../webhost/app'

export interface ServeFlags {
  port?: number
  root?: string[]
}

export async function runServe(flags: ServeFlags): Promise<void> {
  const host = await serveStudio({
    ...(flags.port !== undefined ? { port: flags.port } : {}),
    ...(flags.root ? { roots: flags.root } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  })
  process.stdout.write(`DPO Studio is running at ${host.url}\n`)
  process.stderr.write('Only this machine can reach it (127.0.0.1); the token in the URL is the key. Ctrl-C stops it.\n')
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      void host.stop().then(resolve)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
