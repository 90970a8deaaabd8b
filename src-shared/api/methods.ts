// API method names and IPC channel names, with no imports: the sandboxed preload can bundle this file alone
// (it cannot load zod). contract.ts checks that these names and its schemas match exactly.
export const API_METHOD_NAMES = [
  'appInfo',
  'engineInfo',
  'engineRestart',
  'modelsList',
  'modelInspect',
  'modelLoad',
  'datasetOpen',
  'datasetRows',
  'datasetPairs',
  'promptsOpen',
  'generateStart',
  'runStart',
  'runResume',
  'jobCancel',
  'jobActive',
  'runsList',
  'runOpen',
  'runPairs',
  'runPairTokens',
  'runAnswerTokens',
  'sweepStart',
  'sweepsList',
  'sweepOpen',
  'exportComparison',
  'exportAdapter',
  'exportMerged',
  'exportGguf',
  'exportProject',
  'importAdapter',
  'exportRead',
  'fsRoots',
  'fsList',
  'dialogOpen',
  'dialogSave',
] as const

/** Electron IPC channel names (prefix + method), and the one event channel. */
export const IPC_PREFIX = 'api:'
export const IPC_EVENT_CHANNEL = 'api-event'
