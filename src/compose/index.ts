export type { ComposeModel, ComposeNetwork, ComposeService, EnvFileRef, EnvVar, Located, PortSpec, ServiceNetworkRef } from './model.js';
export { parseCompose, parseEnvFile, MAX_PORT_RANGE } from './parse.js';
export { findReferences, type FoundReference } from './references.js';
export { imageRepository, wellKnownImagePort, WELL_KNOWN_IMAGE_PORTS } from './spec.js';
export {
  networkTag, toDnsLabel, translateCompose, TARGET_HOST,
  type ImportPlan, type MeshServicePlan, type NodePlan, type Placement, type PortOverride, type ServiceReference, type ServiceSummary, type TranslateOptions,
} from './translate.js';
export { nixString, renderJson, renderJsonText, renderNix, type AgentConfigFragment } from './render.js';
