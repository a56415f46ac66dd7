-- Health of a CUSync (cu-reconciler.io/v1alpha1) for Argo CD, from its kstatus conditions.
-- Suspended: spec.suspend is true (the controller applies nothing until it is false).
-- Healthy: Ready=True at the desired revision (lastAppliedRevision == lastAttemptedRevision)
-- for the current generation. Progressing: not observed yet, or Reconciling (a failure being
-- retried). Degraded: Stalled (a commit to fix, or failures repeated until the controller
-- gave up waiting), Ready=False with nothing in progress, or promises the devices cannot keep.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- Argo CD runs health checks without the string library (only base, table, package and a
-- safe os), so revisions are shown whole.
local function rev(value)
  if value == nil then
    return "none"
  end
  return value
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: the controller applies nothing"
  return hs
end

local generation = obj.metadata.generation or 0
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  local msg = stalled.message or stalled.reason or "Stalled"
  local err = obj.status.lastError
  if err ~= nil and err.file ~= nil and err.file ~= "" then
    local where = err.file
    if err.line ~= nil then
      where = where .. ":" .. tostring(err.line)
    end
    msg = msg .. " (" .. where .. ")"
  end
  hs.message = msg
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or "Reconciling revision " .. rev(obj.status.lastAttemptedRevision)
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  if obj.status.lastAppliedRevision ~= nil
      and obj.status.lastAppliedRevision == obj.status.lastAttemptedRevision then
    local shortfalls = obj.status.shortfalls
    if shortfalls ~= nil and shortfalls[1] ~= nil then
      hs.status = "Degraded"
      hs.message = shortfalls[1].message or "promise not deliverable"
      if shortfalls[2] ~= nil then
        hs.message = hs.message .. " (and " .. tostring(#shortfalls - 1) .. " more)"
      end
      return hs
    end
    hs.status = "Healthy"
    hs.message = "Applied revision " .. rev(obj.status.lastAppliedRevision)
    return hs
  end
  hs.status = "Progressing"
  hs.message = "Applied " .. rev(obj.status.lastAppliedRevision) .. ", desired "
      .. rev(obj.status.lastAttemptedRevision)
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message or ready.reason or "Not ready"
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
