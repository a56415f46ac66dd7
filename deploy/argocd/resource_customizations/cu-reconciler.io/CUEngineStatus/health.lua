-- Health of the CUEngineStatus (cu-reconciler.io/v1alpha1) that `cuctl render --status` adds to
-- the render an engine applies: the admission result of the revision rendered.
-- Degraded: promises the devices cannot keep (shortfalls), or claims only a change to the
-- repository admits (unknown tenant or pool, namespace not allowed, no quota, too large).
-- Healthy: otherwise; claims pending for capacity are the admission rule working (they wait,
-- named in the object), so they are counted in the message, not an alarm.
-- Progressing: no report yet. A render that fails renders nothing: Argo CD shows that as the
-- Application's ComparisonError, with the file and line, and keeps this object as it was.
local hs = {}
local r = obj.report
if r == nil or r.revision == nil or r.claims == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the render's report"
  return hs
end

local function count(value)
  if value == nil then
    return 0
  end
  return value
end

local c = r.claims
local summary = "revision " .. r.revision .. ": " .. tostring(count(c.admitted))
    .. " claims admitted, " .. tostring(count(c.pending)) .. " pending, "
    .. tostring(count(c.preempted)) .. " preempted"

local shortfalls = r.shortfalls
if shortfalls ~= nil and shortfalls[1] ~= nil then
  hs.status = "Degraded"
  local msg = shortfalls[1].message or "promise not deliverable"
  if shortfalls[2] ~= nil then
    msg = msg .. " (and " .. tostring(#shortfalls - 1) .. " more)"
  end
  hs.message = msg .. "; " .. summary
  return hs
end

if count(c.needingChange) > 0 then
  hs.status = "Degraded"
  local msg = tostring(c.needingChange) .. " claims need a change to the repository to be admitted"
  if r.notAdmitted ~= nil then
    for _, e in ipairs(r.notAdmitted) do
      if e.needsChange == true then
        msg = msg .. ", first " .. (e.namespace or "") .. "/" .. (e.name or "") .. ": "
            .. (e.reason or "")
        if e.message ~= nil and e.message ~= "" then
          msg = msg .. ": " .. e.message
        end
        break
      end
    end
  end
  hs.message = msg .. "; " .. summary
  return hs
end

hs.status = "Healthy"
hs.message = summary
return hs
