// Blob-store key scheme (see the layout comment in store/file-store.ts).
export const blockKey = (sha256: string): string => `blocks/${sha256}`;
export const mapKey = (sha256: string): string => `maps/${sha256}`;
export const DESCRIPTOR_KEY = 's3dedup.json';
export const BLOCK_PREFIX = 'blocks/';
export const MAP_PREFIX = 'maps/';
