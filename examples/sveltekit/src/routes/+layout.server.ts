import { env } from '$env/dynamic/private';
import type { LayoutServerLoad } from './$types';

export const load: LayoutServerLoad = ({ locals }) => ({
  user: locals.user,
  trackerToken: locals.trackerToken,
  trackerUrl: (env.TRACKER_URL || 'http://127.0.0.1:8000').replace(/\/+$/, ''),
});
