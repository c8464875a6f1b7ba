/**
 * What every enrolment token starts with (`hub enroll-token create` makes them; `flashlex enroll`
 * takes them): a tag a device can check before it sends anything, so that the operator's access
 * token, pasted by mistake, is refused there instead of travelling to the hub's /enroll.
 */
export const ENROLMENT_TOKEN_TAG = "flxe_";
