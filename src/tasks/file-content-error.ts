/**
 * A file's content cannot be edited safely (does not parse, unexpected shape).
 * Pure edit functions throw it without knowing the node or path; the planner adds both.
 */
export class FileContentError extends Error {
  override name = 'FileContentError';
}
