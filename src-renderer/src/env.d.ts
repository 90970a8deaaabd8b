// Type shims for the renderer build: Vue single-file components, and window.api from the Electron preload.
declare module '*.vue' {
  import type { DefineComponent } from 'vue'
  const component: DefineComponent<object, object, unknown>
  export default component
}

interface Window {
  /** Present in the desktop app (preload bridge); absent in a browser, where the WebSocket client stands in. */
  api?: import('@shared/api/contract').BridgeApi
}
