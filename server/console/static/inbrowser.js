// transformers.js in the page: a trained classifier's ONNX export and the served sentence encoder, loaded
// from this server only (the vendored library, its WebAssembly, the models' files). WebGPU when the
// browser has an adapter, WebAssembly otherwise.
const VENDOR = "/console/vendor/";
let library = null;
const pipelines = new Map();

async function load() {
  if (!library) {
    library = (async () => {
      let module;
      try {
        module = await import(`${VENDOR}transformers.min.js`);
      } catch (error) {
        throw new Error(`transformers.js is not installed on this server (${error.message}): run make install`);
      }
      const gpu = await webgpu();
      const { env } = module;
      env.allowRemoteModels = false; // never the Hub: every file comes from this server
      env.allowLocalModels = true;
      env.localModelPath = "/";
      env.useBrowserCache = false; // the server's files change when a classifier is retrained
      const variant = gpu ? "ort-wasm-simd-threaded.asyncify" : "ort-wasm-simd-threaded";
      env.backends.onnx.wasm.wasmPaths = { mjs: `${VENDOR}${variant}.mjs`, wasm: `${VENDOR}${variant}.wasm` };
      return { module, device: gpu ? "webgpu" : "wasm" };
    })();
    library.catch(() => { library = null; });
  }
  return library;
}

async function webgpu() {
  try {
    return Boolean(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

async function pipelineFor(task, model) {
  const key = `${task}:${model}`;
  if (!pipelines.has(key)) {
    const made = load().then(({ module, device }) => module.pipeline(task, model, { device, dtype: "fp32" }));
    made.catch(() => pipelines.delete(key));
    pipelines.set(key, made);
  }
  return pipelines.get(key);
}

// The device the models run on here: "webgpu" or "wasm".
export async function browserDevice() {
  return (await load()).device;
}

// Forget a classifier's loaded model (after it is retrained or deleted).
export function forget(name) {
  pipelines.delete(`text-classification:classifiers/${name}/model`);
}

// {label: probability} for every label of the trained classifier `name`, computed in this browser.
export async function classifyInBrowser(name, text) {
  const classify = await pipelineFor("text-classification", `classifiers/${name}/model`);
  const ranked = await classify(text, { top_k: null });
  return Object.fromEntries(ranked.map(({ label, score }) => [label, score]));
}

// Unit vectors (mean-pooled, as the server's encoder) for `texts`, computed in this browser.
export async function embedInBrowser(texts) {
  const embed = await pipelineFor("feature-extraction", "encoder/model");
  const output = await embed(texts, { pooling: "mean", normalize: true });
  return output.tolist();
}
